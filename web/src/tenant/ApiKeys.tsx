import { useId, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime, type Page, type Role } from '../api';
import { useRole } from '../auth';
import { ConfirmDialog, ErrorBox, Loading, Modal, RoleField, TableHead, useDocumentTitle } from '../components/common';

interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  role: Role;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  secret?: string;
}

function NewKey({ onCreated, myRole }: { onCreated(k: ApiKey): void; myRole: Role }) {
  const id = useId();
  const qc = useQueryClient();
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>('editor');
  const create = useMutation({
    mutationFn: () => api<ApiKey>('/api/api-keys', { method: 'POST', body: { name: name.trim(), role } }),
    onSuccess: (k) => {
      qc.invalidateQueries({ queryKey: ['api-keys'] });
      onCreated(k);
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
        <label htmlFor={`${id}-n`}>Key name</label>
        <input id={`${id}-n`} value={name} onChange={(e) => setName(e.target.value)} required />
      </div>
      <RoleField id={`${id}-r`} value={role} myRole={myRole} onChange={setRole} />
      <ErrorBox error={create.error} title="Not created" />
      <div className="dialog-actions">
        <button type="submit" className="primary" disabled={create.isPending}>
          Create key
        </button>
      </div>
    </form>
  );
}

/** A new key's secret, shown once, with a copy button (API keys and API consumers' keys). */
export function ShowSecret({ k, onDone, label = 'New API key' }: { k: { secret?: string }; onDone(): void; label?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div>
      <p className="warning" role="alert">
        Copy this key now: it is shown only once and cannot be retrieved later.
      </p>
      <div className="secret-row">
        <label htmlFor="new-key-secret" className="sr-only">
          {label}
        </label>
        <input id="new-key-secret" className="mono" readOnly value={k.secret ?? ''} onFocus={(e) => e.target.select()} />
        <button
          type="button"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(k.secret ?? '');
              setCopied(true);
            } catch {
              (document.getElementById('new-key-secret') as HTMLInputElement | null)?.select();
              document.execCommand?.('copy');
              setCopied(true);
            }
          }}
        >
          {copied ? 'Copied' : 'Copy'}
        </button>
      </div>
      <div className="dialog-actions">
        <button type="button" className="primary" onClick={onDone}>
          I have stored it
        </button>
      </div>
    </div>
  );
}

export function ApiKeysPage() {
  useDocumentTitle('API keys');
  const { isAdmin, role } = useRole();
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['api-keys'], queryFn: () => api<Page<ApiKey>>('/api/api-keys'), enabled: isAdmin });
  const [open, setOpen] = useState(false);
  const [created, setCreated] = useState<ApiKey | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  if (!isAdmin) {
    return (
      <div className="page">
        <h1>API keys</h1>
        <p>Only admins manage API keys.</p>
      </div>
    );
  }
  return (
    <div className="page">
      <div className="page-head">
        <h1>API keys</h1>
        <button
          type="button"
          className="primary"
          onClick={() => {
            setCreated(null);
            setOpen(true);
          }}
        >
          New API key
        </button>
      </div>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.items.length === 0 ? <p className="empty">No API keys yet.</p> : null}
      {q.data && q.data.items.length ? (
        <div className="table-wrap">
          <table>
            <TableHead columns={['Name', 'Prefix', 'Role', 'Created', 'Last used']} actions />
            <tbody>
              {q.data.items.map((k) => (
                <tr key={k.id}>
                  <td>{k.name}</td>
                  <td className="mono">{k.prefix}…</td>
                  <td>{k.role}</td>
                  <td>{formatTime(k.created_at)}</td>
                  <td>{k.last_used_at ? formatTime(k.last_used_at) : 'never'}</td>
                  <td>
                    {k.revoked_at ? (
                      <span className="badge">revoked {formatTime(k.revoked_at)}</span>
                    ) : (
                      <button type="button" className="danger" onClick={() => setRevoking(k)} aria-label={`Revoke ${k.name}`}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Modal open={open} onOpenChange={(o) => { setOpen(o); if (!o) setCreated(null); }} title={created ? 'Your new API key' : 'New API key'}>
        {created ? <ShowSecret k={created} onDone={() => { setOpen(false); setCreated(null); }} /> : role ? <NewKey myRole={role} onCreated={setCreated} /> : null}
      </Modal>
      <ConfirmDialog
        open={revoking !== null}
        onOpenChange={(o) => !o && setRevoking(null)}
        danger
        title={`Revoke ${revoking?.name}?`}
        description="Anything using this key is refused from now on."
        confirmLabel="Revoke"
        onConfirm={async () => {
          await api(`/api/api-keys/${revoking!.id}`, { method: 'DELETE' });
          await qc.invalidateQueries({ queryKey: ['api-keys'] });
        }}
      />
    </div>
  );
}
