import { useEffect, useId, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime, type Page } from '../api';
import { useRole } from '../auth';
import { ConfirmDialog, ErrorBox, Loading, Modal, TableHead, useDocumentTitle } from '../components/common';

interface Connection {
  name: string;
  kind: string;
  description: string;
  version: number;
  created_at: string;
  updated_at: string;
}

interface FieldDef {
  key: string;
  label: string;
  secret?: boolean;
  list?: boolean;
  optional?: boolean;
  placeholder?: string;
}

const HOSTS: FieldDef = { key: 'hosts', label: 'Hosts (one per line)', list: true, optional: true, placeholder: 'api.example.com\n*.example.com:443' };

export const CONNECTION_KINDS: Record<string, { label: string; fields: FieldDef[] }> = {
  api_key: { label: 'API key header', fields: [{ key: 'header', label: 'Header', placeholder: 'X-Api-Key' }, { key: 'value', label: 'Key', secret: true }, HOSTS] },
  basic: { label: 'HTTP basic', fields: [{ key: 'username', label: 'Username' }, { key: 'password', label: 'Password', secret: true }, HOSTS] },
  bearer: { label: 'Bearer token', fields: [{ key: 'token', label: 'Token', secret: true }, HOSTS] },
  oauth2_client_credentials: {
    label: 'OAuth 2.0 client credentials',
    fields: [
      { key: 'token_url', label: 'Token URL', placeholder: 'https://auth.example.com/oauth/token' },
      { key: 'client_id', label: 'Client ID' },
      { key: 'client_secret', label: 'Client secret', secret: true },
      { key: 'scopes', label: 'Scopes (one per line)', list: true, optional: true },
      HOSTS,
    ],
  },
  postgres: { label: 'PostgreSQL', fields: [{ key: 'url', label: 'Connection URL', secret: true, placeholder: 'postgres://user:password@host:5432/db' }] },
  amqp: { label: 'AMQP (RabbitMQ)', fields: [{ key: 'url', label: 'Connection URL', secret: true, placeholder: 'amqp://user:password@host:5672/%2f' }] },
};

function ConnectionForm({ existing, onDone }: { existing: Connection | null; onDone(): void }) {
  const qc = useQueryClient();
  const [name, setName] = useState(existing?.name ?? '');
  const [description, setDescription] = useState(existing?.description ?? '');
  const [kind, setKind] = useState(existing?.kind && CONNECTION_KINDS[existing.kind] ? existing.kind : 'bearer');
  const [values, setValues] = useState<Record<string, string>>({});
  // An existing connection's fields that are not secrets (`settings`), to edit; its secrets are never sent back.
  const detail = useQuery({
    queryKey: ['connection', existing?.name],
    queryFn: () => api<Connection & { settings: Record<string, unknown> }>(`/api/connections/${encodeURIComponent(existing!.name)}`),
    enabled: !!existing,
  });
  useEffect(() => {
    const settings = detail.data?.settings;
    if (!settings) return;
    const filled: Record<string, string> = {};
    for (const [k, v] of Object.entries(settings)) filled[k] = Array.isArray(v) ? v.join('\n') : String(v ?? '');
    setValues((current) => ({ ...filled, ...current }));
  }, [detail.data]);
  const id = useId();
  const save = useMutation({
    mutationFn: () => {
      const spec: Record<string, unknown> = {};
      for (const f of CONNECTION_KINDS[kind]!.fields) {
        const v = values[f.key] ?? '';
        if (f.list) {
          const items = v.split('\n').map((s) => s.trim()).filter(Boolean);
          if (items.length) spec[f.key] = items;
        } else if (v !== '' || !f.optional) spec[f.key] = v;
      }
      const doc = { apiVersion: 'tessera.dev/v1', kind: 'Connection', metadata: { name: name.trim(), ...(description ? { description } : {}) }, spec: { [kind]: spec } };
      return api('/api/apply', { method: 'POST', raw: { contentType: 'application/json', text: JSON.stringify(doc) } });
    },
    onSuccess: () => {
      qc.invalidateQueries({ queryKey: ['connections'] });
      onDone();
    },
  });
  const errors = (save.error as { body?: { errors?: { path: string; message: string }[] } } | null)?.body?.errors;
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <div className="field">
        <label htmlFor={`${id}-name`}>Name</label>
        <input id={`${id}-name`} value={name} onChange={(e) => setName(e.target.value)} required readOnly={!!existing} pattern="[a-z0-9]([a-z0-9\-]*[a-z0-9])?" />
      </div>
      <div className="field">
        <label htmlFor={`${id}-desc`}>Description</label>
        <input id={`${id}-desc`} value={description} onChange={(e) => setDescription(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor={`${id}-kind`}>Kind</label>
        <select id={`${id}-kind`} value={kind} onChange={(e) => setKind(e.target.value)}>
          {Object.entries(CONNECTION_KINDS).map(([k, v]) => (
            <option key={k} value={k}>
              {v.label}
            </option>
          ))}
        </select>
      </div>
      {existing ? <p className="muted small">Secrets are never shown: enter them again to save a new version (this is version {existing.version}).</p> : null}
      {CONNECTION_KINDS[kind]!.fields.map((f) => (
        <div className="field" key={`${kind}-${f.key}`}>
          <label htmlFor={`${id}-${f.key}`}>
            {f.label}
            {f.secret ? ' (secret, write-only)' : ''}
          </label>
          {f.list ? (
            <textarea id={`${id}-${f.key}`} rows={3} value={values[f.key] ?? ''} placeholder={f.placeholder} onChange={(e) => setValues({ ...values, [f.key]: e.target.value })} />
          ) : (
            <input
              id={`${id}-${f.key}`}
              type={f.secret ? 'password' : 'text'}
              autoComplete={f.secret ? 'new-password' : 'off'}
              required={!f.optional}
              value={values[f.key] ?? ''}
              placeholder={f.placeholder}
              onChange={(e) => setValues({ ...values, [f.key]: e.target.value })}
            />
          )}
        </div>
      ))}
      <ErrorBox error={save.error} title="Not saved" />
      {errors?.length ? (
        <ul className="problem-list">
          {errors.map((e, i) => (
            <li key={i}>
              <code>{e.path}</code>: {e.message}
            </li>
          ))}
        </ul>
      ) : null}
      <div className="dialog-actions">
        <button type="button" onClick={onDone}>
          Close
        </button>
        <button type="submit" className="primary" disabled={save.isPending}>
          {save.isPending ? 'Saving…' : 'Save connection'}
        </button>
      </div>
    </form>
  );
}

function TestResult({ name }: { name: string }) {
  const test = useMutation({ mutationFn: () => api<{ ok: boolean; detail: string }>(`/api/connections/${encodeURIComponent(name)}/test`, { method: 'POST' }) });
  return (
    <span className="test-result">
      <button type="button" onClick={() => test.mutate()} disabled={test.isPending} aria-label={`Test ${name}`}>
        {test.isPending ? 'Testing…' : 'Test'}
      </button>
      {test.data ? (
        <span role="status" className={test.data.ok ? 'ok' : 'bad'}>
          {test.data.ok ? 'OK' : 'Failed'}: {test.data.detail}
        </span>
      ) : null}
      {test.error ? (
        <span role="status" className="bad">
          {(test.error as Error).message} <code>{(test.error as { code?: string }).code}</code>
        </span>
      ) : null}
    </span>
  );
}

export function ConnectionsPage() {
  useDocumentTitle('Connections');
  const { canEdit } = useRole();
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['connections'], queryFn: () => api<Page<Connection>>('/api/connections') });
  const [editing, setEditing] = useState<Connection | 'new' | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Connections</h1>
        {canEdit ? (
          <button type="button" className="primary" onClick={() => setEditing('new')}>
            New connection
          </button>
        ) : null}
      </div>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.items.length === 0 ? <p className="empty">No connections yet.</p> : null}
      {q.data && q.data.items.length ? (
        <div className="table-wrap">
          <table>
            <TableHead columns={['Name', 'Kind', 'Description', 'Version', 'Updated']} actions={canEdit} />
            <tbody>
              {q.data.items.map((c) => (
                <tr key={c.name}>
                  <td>{c.name}</td>
                  <td>{CONNECTION_KINDS[c.kind]?.label ?? c.kind}</td>
                  <td>{c.description}</td>
                  <td>v{c.version}</td>
                  <td>{formatTime(c.updated_at)}</td>
                  {canEdit ? (
                    <td className="row-actions">
                      <TestResult name={c.name} />
                      <button type="button" onClick={() => setEditing(c)} aria-label={`Edit ${c.name}`}>
                        Edit
                      </button>
                      <button type="button" className="danger" onClick={() => setDeleting(c.name)} aria-label={`Delete ${c.name}`}>
                        Delete
                      </button>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Modal open={editing !== null} onOpenChange={(o) => !o && setEditing(null)} title={editing === 'new' ? 'New connection' : `Edit ${(editing as Connection | null)?.name ?? ''}`}>
        {editing !== null ? <ConnectionForm existing={editing === 'new' ? null : editing} onDone={() => setEditing(null)} /> : null}
      </Modal>
      <ConfirmDialog
        open={deleting !== null}
        onOpenChange={(o) => !o && setDeleting(null)}
        danger
        title={`Delete connection ${deleting}?`}
        description="Integrations that use it fail until it is created again."
        confirmLabel="Delete"
        onConfirm={async () => {
          await api(`/api/connections/${encodeURIComponent(deleting!)}`, { method: 'DELETE' });
          await qc.invalidateQueries({ queryKey: ['connections'] });
        }}
      />
    </div>
  );
}
