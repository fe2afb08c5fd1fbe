import { useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime } from '../api';
import { ConfirmDialog, ErrorBox, Loading, TableHead, useDocumentTitle } from '../components/common';
import { TenantActions, type Tenant } from './Tenants';

interface Limits {
  tenant: string;
  limits: Record<string, number>;
  overridden: string[];
  defaults: Record<string, number>;
}

interface Egress {
  tenant: string;
  allow: string[];
  deny: string[];
  platform: { mode: string; allow_loopback: boolean; allow_private: boolean; allow: string[]; deny: string[] };
}

function LimitRow({ slug, name, value, def, overridden }: { slug: string; name: string; value: number; def: number; overridden: boolean }) {
  const qc = useQueryClient();
  const [draft, setDraft] = useState<string>(String(value));
  const patch = useMutation({
    mutationFn: (v: number | null) => api(`/api/platform/tenants/${slug}/limits`, { method: 'PATCH', body: { [name]: v } }),
    onSuccess: (_d, v) => {
      if (v === null) setDraft(String(def));
      qc.invalidateQueries({ queryKey: ['platform', 'tenant', slug, 'limits'] });
    },
  });
  const id = `limit-${name}`;
  return (
    <tr>
      <th scope="row">
        <label htmlFor={id}>{name}</label>
      </th>
      <td>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            patch.mutate(Number(draft));
          }}
        >
          <input id={id} type="number" min={0} value={draft} onChange={(e) => setDraft(e.target.value)} />
          <button type="submit" disabled={patch.isPending || draft === String(value)} aria-label={`Set ${name}`}>
            Set
          </button>
        </form>
      </td>
      <td>{overridden ? <span className="badge">overridden</span> : <span className="muted">default</span>}</td>
      <td>{def}</td>
      <td>
        {overridden ? (
          <button type="button" onClick={() => patch.mutate(null)} disabled={patch.isPending} aria-label={`Reset ${name} to default`}>
            Reset to default
          </button>
        ) : null}
        {patch.error ? (
          <span className="bad small" role="alert">
            {(patch.error as Error).message}
          </span>
        ) : null}
      </td>
    </tr>
  );
}

function EgressRules({ slug }: { slug: string }) {
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['platform', 'tenant', slug, 'egress'], queryFn: () => api<Egress>(`/api/platform/tenants/${slug}/egress`) });
  const [rule, setRule] = useState('');
  const [action, setAction] = useState<'allow' | 'deny'>('allow');
  const change = useMutation({
    mutationFn: ({ act, rules, remove }: { act: 'allow' | 'deny'; rules: string[]; remove: boolean }) =>
      api(`/api/platform/tenants/${slug}/egress/${act}`, { method: remove ? 'DELETE' : 'POST', body: { rules } }),
    onSuccess: () => {
      setRule('');
      qc.invalidateQueries({ queryKey: ['platform', 'tenant', slug, 'egress'] });
    },
  });
  return (
    <section aria-labelledby="egress-h">
      <h2 id="egress-h">Egress rules</h2>
      <ErrorBox error={q.error ?? change.error} />
      {q.data ? (
        <>
          <p className="muted">
            Platform policy: mode <strong>{q.data.platform.mode}</strong>, loopback {q.data.platform.allow_loopback ? 'allowed' : 'denied'}, private ranges{' '}
            {q.data.platform.allow_private ? 'allowed' : 'denied'}
            {q.data.platform.allow.length ? `, allow ${q.data.platform.allow.join(', ')}` : ''}
            {q.data.platform.deny.length ? `, deny ${q.data.platform.deny.join(', ')}` : ''}. A deny wins over any allow.
          </p>
          <div className="two-col">
            {(['allow', 'deny'] as const).map((act) => (
              <div key={act}>
                <h3>{act === 'allow' ? 'Allowed' : 'Denied'}</h3>
                {q.data[act].length === 0 ? <p className="muted">none</p> : null}
                <ul className="rules">
                  {q.data[act].map((r) => (
                    <li key={r}>
                      <code>{r}</code>{' '}
                      <button type="button" onClick={() => change.mutate({ act, rules: [r], remove: true })} aria-label={`Remove ${act} rule ${r}`}>
                        Remove
                      </button>
                    </li>
                  ))}
                </ul>
              </div>
            ))}
          </div>
          <form
            className="toolbar"
            onSubmit={(e) => {
              e.preventDefault();
              const rules = rule.split(/[\s,]+/).filter(Boolean);
              if (rules.length) change.mutate({ act: action, rules, remove: false });
            }}
          >
            <div className="field inline">
              <label htmlFor="egress-action">Rule type</label>
              <select id="egress-action" value={action} onChange={(e) => setAction(e.target.value as 'allow' | 'deny')}>
                <option value="allow">allow</option>
                <option value="deny">deny</option>
              </select>
            </div>
            <div className="field inline">
              <label htmlFor="egress-rule">Rule</label>
              <input id="egress-rule" value={rule} onChange={(e) => setRule(e.target.value)} placeholder="10.0.0.0/8 or *.acme.internal:443" />
            </div>
            <button type="submit" disabled={change.isPending}>
              Add rule
            </button>
          </form>
        </>
      ) : (
        <Loading />
      )}
    </section>
  );
}

interface Daily {
  tenant: string;
  days: { day: string; total: number; succeeded: number; failed: number; cancelled: number }[];
}

/** The tenant's executions per UTC day, the last 14 days (`/stats?days=14`). */
function ExecutionsPerDay({ slug }: { slug: string }) {
  const q = useQuery({ queryKey: ['platform', 'tenant', slug, 'daily'], queryFn: () => api<Daily>(`/api/platform/tenants/${slug}/stats`, { query: { days: 14 } }) });
  return (
    <section aria-labelledby="daily-h">
      <h2 id="daily-h">Executions per day (UTC, last 14 days)</h2>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.days.length === 0 ? <p className="muted">No executions in the last 14 days.</p> : null}
      {q.data && q.data.days.length > 0 ? (
        <div className="table-wrap">
          <table data-testid="executions-per-day">
            <TableHead columns={['Day', 'Executions', 'Succeeded', 'Failed', 'Cancelled']} />
            <tbody>
              {q.data.days.map((d) => (
                <tr key={d.day}>
                  <th scope="row">{d.day.slice(0, 10)}</th>
                  <td>{d.total}</td>
                  <td>{d.succeeded}</td>
                  <td>{d.failed}</td>
                  <td>{d.cancelled}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

/** The DNS record that proves a tenant controls a domain (`Challenge` on the server). */
interface DomainChallenge {
  record_type: string;
  name: string;
  value: string;
}

/** A tenant's custom domain (`GET /api/platform/tenants/{slug}/domains`). */
interface TenantDomain {
  domain: string;
  verified: boolean;
  verified_at: string | null;
  created_at: string;
  verification: DomainChallenge;
}

function ChallengeRecord({ c }: { c: DomainChallenge }) {
  return (
    <span className="small">
      {c.record_type} <code>{c.name}</code> = <code>{c.value}</code>
    </span>
  );
}

function DomainRow({ slug, d, onVerified, onRemove }: { slug: string; d: TenantDomain; onVerified(): void; onRemove(): void }) {
  const qc = useQueryClient();
  const verify = useMutation({
    mutationFn: () => api<TenantDomain>(`/api/platform/tenants/${slug}/domains/${encodeURIComponent(d.domain)}/verify`, { method: 'POST' }),
    onSuccess: () => {
      onVerified();
      qc.invalidateQueries({ queryKey: ['platform', 'tenant', slug, 'domains'] });
    },
  });
  return (
    <tr data-testid={`domain-${d.domain}`}>
      <th scope="row">{d.domain}</th>
      <td>
        {d.verified ? (
          <>
            <span className="badge state-succeeded">Verified</span> <span className="muted small">since {formatTime(d.verified_at)}</span>
          </>
        ) : (
          <span className="badge state-queued">Pending verification</span>
        )}
      </td>
      <td>
        <ChallengeRecord c={d.verification} />
      </td>
      <td>{formatTime(d.created_at)}</td>
      <td>
        <span className="row-actions">
          {d.verified ? null : (
            <button type="button" onClick={() => verify.mutate()} disabled={verify.isPending} aria-label={`Verify ${d.domain}`}>
              {verify.isPending ? 'Verifying…' : 'Verify'}
            </button>
          )}
          <button type="button" className="danger" onClick={onRemove} aria-label={`Remove ${d.domain}`}>
            Remove
          </button>
          {verify.error ? (
            <span className="bad small" role="alert">
              {(verify.error as Error).message}
            </span>
          ) : null}
        </span>
      </td>
    </tr>
  );
}

/** The domains the tenant brings (`integrations.acme.com`), each routed once its TXT record is found. */
function CustomDomains({ slug }: { slug: string }) {
  const qc = useQueryClient();
  const key = ['platform', 'tenant', slug, 'domains'];
  const q = useQuery({ queryKey: key, queryFn: () => api<{ items: TenantDomain[] }>(`/api/platform/tenants/${slug}/domains`) });
  const [domain, setDomain] = useState('');
  const [added, setAdded] = useState<TenantDomain | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);
  const add = useMutation({
    mutationFn: () => api<TenantDomain>(`/api/platform/tenants/${slug}/domains`, { method: 'POST', body: { domain: domain.trim() } }),
    onSuccess: (d) => {
      setDomain('');
      setAdded(d.verified ? null : d);
      qc.invalidateQueries({ queryKey: key });
    },
  });
  return (
    <section aria-labelledby="domains-h">
      <h2 id="domains-h">Custom domains</h2>
      <p className="muted">
        Domains the tenant brings serve its hooks and APIs once it proves it controls their DNS: it publishes the TXT record shown, then the domain is
        verified.
      </p>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.items.length === 0 ? <p className="muted">No custom domains.</p> : null}
      {q.data && q.data.items.length > 0 ? (
        <div className="table-wrap">
          <table aria-label="Custom domains">
            <TableHead columns={['Domain', 'Status', 'TXT record', 'Added']} actions />
            <tbody>
              {q.data.items.map((d) => (
                <DomainRow
                  key={d.domain}
                  slug={slug}
                  d={d}
                  onVerified={() => setAdded((a) => (a?.domain === d.domain ? null : a))}
                  onRemove={() => setRemoving(d.domain)}
                />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {added ? (
        <p className="notice" role="status">
          Publish {added.verification.record_type} record <code>{added.verification.name}</code> = <code>{added.verification.value}</code>, then verify{' '}
          {added.domain}.
        </p>
      ) : null}
      <form
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          add.mutate();
        }}
      >
        <div className="field inline">
          <label htmlFor="domain-name">Domain</label>
          <input id="domain-name" value={domain} onChange={(e) => setDomain(e.target.value)} required placeholder="integrations.acme.com" autoComplete="off" />
        </div>
        <button type="submit" disabled={add.isPending}>
          Add domain
        </button>
      </form>
      <ErrorBox error={add.error} title="Not added" />
      <ConfirmDialog
        open={removing !== null}
        onOpenChange={(o) => !o && setRemoving(null)}
        danger
        title={`Remove domain ${removing}?`}
        description="The tenant is no longer served on it; adding it again means publishing a new TXT record."
        confirmLabel="Remove domain"
        onConfirm={async () => {
          const gone = removing!;
          await api(`/api/platform/tenants/${slug}/domains/${encodeURIComponent(gone)}`, { method: 'DELETE' });
          setAdded((a) => (a?.domain === gone ? null : a));
          await qc.invalidateQueries({ queryKey: key });
        }}
      />
    </section>
  );
}

export function TenantDetail() {
  const { slug = '' } = useParams();
  useDocumentTitle(`Tenant ${slug}`);
  const navigate = useNavigate();
  const t = useQuery({ queryKey: ['platform', 'tenant', slug], queryFn: () => api<Tenant>(`/api/platform/tenants/${slug}`) });
  const limits = useQuery({ queryKey: ['platform', 'tenant', slug, 'limits'], queryFn: () => api<Limits>(`/api/platform/tenants/${slug}/limits`) });
  return (
    <div className="page">
      <p className="crumbs">
        <Link to="/">Tenants</Link> /
      </p>
      <div className="page-head">
        <h1>{slug}</h1>
        {t.data ? <TenantActions tenant={t.data} onDeleted={() => navigate('/')} /> : null}
      </div>
      <ErrorBox error={t.error} />
      {t.data ? (
        <p>
          {t.data.name} · <span className={`badge status-${t.data.status}`}>{t.data.status}</span> · schema v{t.data.schema_version} · created {formatTime(t.data.created_at)}
        </p>
      ) : null}
      <section aria-labelledby="limits-h">
        <h2 id="limits-h">Limits</h2>
        <ErrorBox error={limits.error} />
        {limits.isLoading ? <Loading /> : null}
        {limits.data ? (
          <div className="table-wrap">
            <table>
              <TableHead columns={['Limit', 'Value', 'Source', 'Default']} actions />
              <tbody>
                {Object.entries(limits.data.limits).map(([k, v]) => (
                  <LimitRow key={`${k}:${v}`} slug={slug} name={k} value={v} def={limits.data.defaults[k] ?? v} overridden={limits.data.overridden.includes(k)} />
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
      </section>
      <ExecutionsPerDay slug={slug} />
      <EgressRules slug={slug} />
      <CustomDomains slug={slug} />
    </div>
  );
}
