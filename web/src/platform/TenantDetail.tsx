import { useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime } from '../api';
import { ErrorBox, Loading, TableHead, useDocumentTitle } from '../components/common';
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
    </div>
  );
}
