import { useId, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime, type Consumer, type ConsumerKey, type Page, type Plan } from '../api';
import { useRole } from '../auth';
import { ConfirmDialog, ErrorBox, Loading, Modal, TableHead, useDocumentTitle } from '../components/common';
import { ShowSecret } from './ApiKeys';

function quotaText(p: Plan): string {
  return p.quota !== null && p.quota_period ? `${p.quota} per ${p.quota_period}` : 'none';
}

function PlanForm({ existing, onDone }: { existing: Plan | null; onDone(): void }) {
  const qc = useQueryClient();
  const id = useId();
  const [name, setName] = useState(existing?.name ?? '');
  const [rate, setRate] = useState(existing ? String(existing.rate_per_second) : '1');
  const [burst, setBurst] = useState(existing ? String(existing.burst) : '10');
  const [quota, setQuota] = useState(existing?.quota !== null && existing?.quota !== undefined ? String(existing.quota) : '');
  const [period, setPeriod] = useState<string>(existing?.quota_period ?? '');
  const [description, setDescription] = useState(existing?.description ?? '');
  const save = useMutation({
    mutationFn: () =>
      api<Plan>(`/api/plans/${encodeURIComponent(name.trim())}`, {
        method: 'PUT',
        body: {
          rate_per_second: Number(rate),
          burst: Number(burst),
          ...(quota.trim() !== '' || period ? { quota: quota.trim() === '' ? null : Number(quota), quota_period: period || null } : {}),
          description,
        },
      }),
    onSuccess: () => {
      qc.invalidateQueries({ queryKey: ['plans'] });
      onDone();
    },
  });
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <div className="field">
        <label htmlFor={`${id}-n`}>Name</label>
        <input id={`${id}-n`} value={name} onChange={(e) => setName(e.target.value)} required readOnly={!!existing} autoComplete="off" />
      </div>
      <div className="field">
        <label htmlFor={`${id}-r`}>Rate (calls per second)</label>
        <input id={`${id}-r`} type="number" min="0" step="any" value={rate} onChange={(e) => setRate(e.target.value)} required aria-describedby={`${id}-r-hint`} />
        <span id={`${id}-r-hint`} className="muted small">
          Sustained; fractions allowed (0.5 is one call every 2 s).
        </span>
      </div>
      <div className="field">
        <label htmlFor={`${id}-b`}>Burst</label>
        <input id={`${id}-b`} type="number" min="1" step="1" value={burst} onChange={(e) => setBurst(e.target.value)} required aria-describedby={`${id}-b-hint`} />
        <span id={`${id}-b-hint`} className="muted small">
          Calls at once after a quiet spell.
        </span>
      </div>
      <div className="field">
        <label htmlFor={`${id}-q`}>Quota</label>
        <input id={`${id}-q`} type="number" min="1" step="1" value={quota} onChange={(e) => setQuota(e.target.value)} required={period !== ''} aria-describedby={`${id}-q-hint`} />
        <span id={`${id}-q-hint`} className="muted small">
          Optional: at most this many calls per UTC day or month.
        </span>
      </div>
      <div className="field">
        <label htmlFor={`${id}-p`}>Quota period</label>
        <select id={`${id}-p`} value={period} onChange={(e) => setPeriod(e.target.value)} required={quota.trim() !== ''}>
          <option value="">no quota</option>
          <option value="day">day</option>
          <option value="month">month</option>
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-d`}>Description</label>
        <input id={`${id}-d`} value={description} onChange={(e) => setDescription(e.target.value)} />
      </div>
      <ErrorBox error={save.error} title="Not saved" />
      <div className="dialog-actions">
        <button type="button" onClick={onDone}>
          Close
        </button>
        <button type="submit" className="primary" disabled={save.isPending}>
          {save.isPending ? 'Saving…' : 'Save plan'}
        </button>
      </div>
    </form>
  );
}

function Plans({ q }: { q: ReturnType<typeof usePlans> }) {
  const qc = useQueryClient();
  const [editing, setEditing] = useState<Plan | 'new' | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  return (
    <section aria-labelledby="plans-h">
      <div className="page-head section-head">
        <h2 id="plans-h">Plans</h2>
        <button type="button" onClick={() => setEditing('new')}>
          Create plan
        </button>
      </div>
      <p className="muted">What a consumer may call: a sustained rate with a burst, and an optional quota per UTC day or month.</p>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.items.length === 0 ? <p className="empty">No plans yet: create one before adding consumers.</p> : null}
      {q.data && q.data.items.length ? (
        <div className="table-wrap">
          <table aria-label="Plans">
            <TableHead columns={['Name', 'Rate', 'Burst', 'Quota', 'Description', 'Updated']} actions />
            <tbody>
              {q.data.items.map((p) => (
                <tr key={p.name}>
                  <th scope="row">{p.name}</th>
                  <td>{p.rate_per_second} / s</td>
                  <td>{p.burst}</td>
                  <td>{quotaText(p)}</td>
                  <td>{p.description}</td>
                  <td>{formatTime(p.updated_at)}</td>
                  <td className="row-actions">
                    <button type="button" onClick={() => setEditing(p)} aria-label={`Edit plan ${p.name}`}>
                      Edit
                    </button>
                    <button type="button" className="danger" onClick={() => setDeleting(p.name)} aria-label={`Delete plan ${p.name}`}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Modal open={editing !== null} onOpenChange={(o) => !o && setEditing(null)} title={editing === 'new' ? 'Create plan' : `Edit plan ${(editing as Plan | null)?.name ?? ''}`}>
        {editing !== null ? <PlanForm existing={editing === 'new' ? null : editing} onDone={() => setEditing(null)} /> : null}
      </Modal>
      <ConfirmDialog
        open={deleting !== null}
        onOpenChange={(o) => !o && setDeleting(null)}
        danger
        title={`Delete plan ${deleting}?`}
        description="A plan a consumer is on cannot be deleted: move its consumers to another plan first."
        confirmLabel="Delete"
        onConfirm={async () => {
          await api(`/api/plans/${encodeURIComponent(deleting!)}`, { method: 'DELETE' });
          await qc.invalidateQueries({ queryKey: ['plans'] });
        }}
      />
    </section>
  );
}

function ConsumerForm({ plans, onDone }: { plans: Plan[]; onDone(): void }) {
  const qc = useQueryClient();
  const id = useId();
  const [name, setName] = useState('');
  const [plan, setPlan] = useState(plans[0]?.name ?? '');
  const [description, setDescription] = useState('');
  const create = useMutation({
    mutationFn: () => api<Consumer>('/api/consumers', { method: 'POST', body: { name: name.trim(), plan, ...(description ? { description } : {}) } }),
    onSuccess: () => {
      qc.invalidateQueries({ queryKey: ['consumers'] });
      onDone();
    },
  });
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        create.mutate();
      }}
    >
      <div className="field">
        <label htmlFor={`${id}-n`}>Name</label>
        <input id={`${id}-n`} value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off" aria-describedby={`${id}-n-hint`} />
        <span id={`${id}-n-hint`} className="muted small">
          Lowercase letters, digits and dashes, starting with a letter; integrations read it as <code>.trigger.consumer</code>.
        </span>
      </div>
      <div className="field">
        <label htmlFor={`${id}-p`}>Plan</label>
        <select id={`${id}-p`} value={plan} onChange={(e) => setPlan(e.target.value)} required>
          {plans.map((p) => (
            <option key={p.name} value={p.name}>
              {p.name}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-d`}>Description</label>
        <input id={`${id}-d`} value={description} onChange={(e) => setDescription(e.target.value)} />
      </div>
      <ErrorBox error={create.error} title="Not created" />
      <div className="dialog-actions">
        <button type="button" onClick={onDone}>
          Close
        </button>
        <button type="submit" className="primary" disabled={create.isPending}>
          Create consumer
        </button>
      </div>
    </form>
  );
}

function PlanSelect({ consumer, plans }: { consumer: Consumer; plans: Plan[] }) {
  const qc = useQueryClient();
  const change = useMutation({
    mutationFn: (plan: string) => api<Consumer>(`/api/consumers/${consumer.id}`, { method: 'PATCH', body: { plan } }),
    onSettled: () => qc.invalidateQueries({ queryKey: ['consumers'] }),
  });
  const names = plans.map((p) => p.name);
  if (!names.includes(consumer.plan)) names.unshift(consumer.plan);
  return (
    <>
      <label className="sr-only" htmlFor={`plan-${consumer.id}`}>
        Plan of {consumer.name}
      </label>
      <select id={`plan-${consumer.id}`} value={consumer.plan} disabled={change.isPending} onChange={(e) => change.mutate(e.target.value)}>
        {names.map((n) => (
          <option key={n} value={n}>
            {n}
          </option>
        ))}
      </select>
      {change.error ? (
        <span className="bad small" role="alert">
          {(change.error as Error).message}
        </span>
      ) : null}
    </>
  );
}

function Keys({ consumer, onRevoke }: { consumer: Consumer; onRevoke(k: ConsumerKey): void }) {
  if (consumer.keys.length === 0) return <span className="muted">no keys</span>;
  return (
    <ul className="key-list" aria-label={`Keys of ${consumer.name}`}>
      {consumer.keys.map((k) => (
        <li key={k.id} data-testid={`consumer-key-${k.prefix}`}>
          <code>{k.prefix}…</code>
          <span className="muted small">{k.last_used_at ? `used ${formatTime(k.last_used_at)}` : 'never used'}</span>
          {k.revoked_at ? (
            <span className="badge">revoked {formatTime(k.revoked_at)}</span>
          ) : (
            <button type="button" className="danger" onClick={() => onRevoke(k)} aria-label={`Revoke key ${k.prefix}`}>
              Revoke
            </button>
          )}
        </li>
      ))}
    </ul>
  );
}

function Consumers({ plans }: { plans: Plan[] | undefined }) {
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['consumers'], queryFn: () => api<Page<Consumer>>('/api/consumers') });
  const [adding, setAdding] = useState(false);
  const [deleting, setDeleting] = useState<Consumer | null>(null);
  const [revoking, setRevoking] = useState<{ consumer: Consumer; key: ConsumerKey } | null>(null);
  const [created, setCreated] = useState<{ consumer: string; key: ConsumerKey } | null>(null);
  const newKey = useMutation({
    mutationFn: (c: Consumer) => api<ConsumerKey>(`/api/consumers/${c.id}/keys`, { method: 'POST' }),
    onSuccess: (key, c) => {
      setCreated({ consumer: c.name, key });
      qc.invalidateQueries({ queryKey: ['consumers'] });
    },
  });
  const noPlans = plans !== undefined && plans.length === 0;
  return (
    <section aria-labelledby="consumers-h">
      <div className="page-head section-head">
        <h2 id="consumers-h">Consumers</h2>
        <button type="button" className="primary" onClick={() => setAdding(true)} disabled={!plans || noPlans} title={noPlans ? 'Create a plan first' : undefined}>
          Add consumer
        </button>
      </div>
      <p className="muted">
        Who may call the tenant&apos;s APIs, each with its own keys, sent as <code>X-API-Key: tck_…</code>. To rotate a key, make a new one, move the caller
        to it, then revoke the old one.
      </p>
      <ErrorBox error={q.error} />
      <ErrorBox error={newKey.error} title="No key made" />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.items.length === 0 ? <p className="empty">No consumers yet.</p> : null}
      {q.data && q.data.items.length ? (
        <div className="table-wrap">
          <table aria-label="Consumers">
            <TableHead columns={['Name', 'Plan', 'Keys', 'Created']} actions />
            <tbody>
              {q.data.items.map((c) => (
                <tr key={c.id} data-testid={`consumer-${c.name}`}>
                  <th scope="row">
                    {c.name}
                    {c.description ? <div className="muted small">{c.description}</div> : null}
                  </th>
                  <td>
                    <PlanSelect consumer={c} plans={plans ?? []} />
                  </td>
                  <td>
                    <Keys consumer={c} onRevoke={(key) => setRevoking({ consumer: c, key })} />
                  </td>
                  <td>{formatTime(c.created_at)}</td>
                  <td className="row-actions">
                    <button type="button" onClick={() => newKey.mutate(c)} disabled={newKey.isPending} aria-label={`New key for ${c.name}`}>
                      New key
                    </button>
                    <button type="button" className="danger" onClick={() => setDeleting(c)} aria-label={`Delete consumer ${c.name}`}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Modal open={adding} onOpenChange={setAdding} title="Add consumer">
        {adding && plans ? <ConsumerForm plans={plans} onDone={() => setAdding(false)} /> : null}
      </Modal>
      <Modal open={created !== null} onOpenChange={(o) => !o && setCreated(null)} title={`Your new key for ${created?.consumer ?? ''}`}>
        {created ? <ShowSecret k={created.key} label="New consumer key" onDone={() => setCreated(null)} /> : null}
      </Modal>
      <ConfirmDialog
        open={revoking !== null}
        onOpenChange={(o) => !o && setRevoking(null)}
        danger
        title={`Revoke key ${revoking?.key.prefix}… of ${revoking?.consumer.name}?`}
        description="Calls with this key are refused from their next one, on every node."
        confirmLabel="Revoke"
        onConfirm={async () => {
          await api(`/api/consumers/${revoking!.consumer.id}/keys/${revoking!.key.id}`, { method: 'DELETE' });
          await qc.invalidateQueries({ queryKey: ['consumers'] });
        }}
      />
      <ConfirmDialog
        open={deleting !== null}
        onOpenChange={(o) => !o && setDeleting(null)}
        danger
        title={`Delete consumer ${deleting?.name}?`}
        description="The consumer and all its keys are deleted: its calls are refused from now on."
        confirmLabel="Delete"
        onConfirm={async () => {
          await api(`/api/consumers/${deleting!.id}`, { method: 'DELETE' });
          await qc.invalidateQueries({ queryKey: ['consumers'] });
        }}
      />
    </section>
  );
}

function usePlans(enabled: boolean) {
  return useQuery({ queryKey: ['plans'], queryFn: () => api<Page<Plan>>('/api/plans'), enabled });
}

export function ConsumersPage() {
  useDocumentTitle('API consumers');
  const { isAdmin } = useRole();
  const plans = usePlans(isAdmin);
  if (!isAdmin) {
    return (
      <div className="page">
        <h1>API consumers</h1>
        <p>Only admins manage API consumers and their plans.</p>
      </div>
    );
  }
  return (
    <div className="page">
      <div className="page-head">
        <h1>API consumers</h1>
      </div>
      <Plans q={plans} />
      <Consumers plans={plans.data?.items} />
    </div>
  );
}
