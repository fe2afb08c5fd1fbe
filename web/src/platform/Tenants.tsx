import { useState } from 'react';
import { Link } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime, type Page } from '../api';
import { ConfirmDialog, ErrorBox, Loading, Modal, TableHead, useDocumentTitle } from '../components/common';

export interface Tenant {
  id: string;
  slug: string;
  name: string;
  status: string;
  schema_version: number;
  created_at: string;
  cluster: string;
}

function CreateTenant({ onDone }: { onDone(msg: string): void }) {
  const qc = useQueryClient();
  const [slug, setSlug] = useState('');
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const create = useMutation({
    mutationFn: () =>
      api<{ owner_password?: string }>('/api/platform/tenants', {
        method: 'POST',
        body: { slug: slug.trim(), name: name.trim() || undefined, owner_email: email.trim(), owner_password: password || undefined },
      }),
    onSuccess: (res) => {
      qc.invalidateQueries({ queryKey: ['platform', 'tenants'] });
      onDone(res?.owner_password && !password ? `Tenant ${slug} created. The owner's generated password (shown once): ${res.owner_password}` : `Tenant ${slug} created.`);
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
        <label htmlFor="t-slug">Slug</label>
        <input id="t-slug" value={slug} onChange={(e) => setSlug(e.target.value.toLowerCase())} required pattern="[a-z0-9]([a-z0-9\-]*[a-z0-9])?" aria-describedby="t-slug-help" />
        <p id="t-slug-help" className="muted small">
          Lowercase letters, digits and dashes: the tenant&apos;s subdomain.
        </p>
      </div>
      <div className="field">
        <label htmlFor="t-name">Name</label>
        <input id="t-name" value={name} onChange={(e) => setName(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor="t-email">Owner email</label>
        <input id="t-email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
      </div>
      <div className="field">
        <label htmlFor="t-password">Owner password</label>
        <input id="t-password" type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} aria-describedby="t-pw-help" />
        <p id="t-pw-help" className="muted small">
          Leave empty to have one generated and shown once.
        </p>
      </div>
      <ErrorBox error={create.error} title="Not created" />
      <div className="dialog-actions">
        <button type="submit" className="primary" disabled={create.isPending}>
          {create.isPending ? 'Creating…' : 'Create tenant'}
        </button>
      </div>
    </form>
  );
}

export function TenantActions({ tenant, onDeleted }: { tenant: Tenant; onDeleted?(): void }) {
  const qc = useQueryClient();
  const [deleting, setDeleting] = useState(false);
  const status = useMutation({
    mutationFn: (action: 'suspend' | 'resume') => api(`/api/platform/tenants/${tenant.slug}/${action}`, { method: 'POST' }),
    onSettled: () => {
      qc.invalidateQueries({ queryKey: ['platform', 'tenants'] });
      qc.invalidateQueries({ queryKey: ['platform', 'tenant', tenant.slug] });
    },
  });
  return (
    <span className="row-actions">
      {tenant.status === 'suspended' ? (
        <button type="button" onClick={() => status.mutate('resume')} disabled={status.isPending} aria-label={`Resume ${tenant.slug}`}>
          Resume
        </button>
      ) : (
        <button type="button" onClick={() => status.mutate('suspend')} disabled={status.isPending} aria-label={`Suspend ${tenant.slug}`}>
          Suspend
        </button>
      )}
      <button type="button" className="danger" onClick={() => setDeleting(true)} aria-label={`Delete ${tenant.slug}`}>
        Delete
      </button>
      {status.error ? (
        <span className="bad small" role="alert">
          {(status.error as Error).message}
        </span>
      ) : null}
      <ConfirmDialog
        open={deleting}
        onOpenChange={setDeleting}
        danger
        typed={tenant.slug}
        title={`Delete tenant ${tenant.slug}?`}
        description="Its schema is exported with pg_dump first, then every integration, execution, connection and user of it is deleted."
        confirmLabel="Delete tenant"
        onConfirm={async () => {
          await api(`/api/platform/tenants/${tenant.slug}`, { method: 'DELETE', query: { confirm: tenant.slug } });
          await qc.invalidateQueries({ queryKey: ['platform', 'tenants'] });
          onDeleted?.();
        }}
      />
    </span>
  );
}

export function TenantsPage() {
  useDocumentTitle('Tenants');
  const q = useQuery({ queryKey: ['platform', 'tenants'], queryFn: () => api<Page<Tenant>>('/api/platform/tenants') });
  const [creating, setCreating] = useState(false);
  const [message, setMessage] = useState<string | null>(null);
  const [search, setSearch] = useState('');
  const items = (q.data?.items ?? []).filter((t) => !search || t.slug.includes(search.toLowerCase()) || t.name.toLowerCase().includes(search.toLowerCase()));
  return (
    <div className="page">
      <div className="page-head">
        <h1>Tenants</h1>
        <button type="button" className="primary" onClick={() => setCreating(true)}>
          New tenant
        </button>
      </div>
      {message ? (
        <p className="notice" role="status">
          {message}
        </p>
      ) : null}
      <div className="toolbar">
        <div className="field inline">
          <label htmlFor="t-search">Search tenants</label>
          <input id="t-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        </div>
      </div>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data ? (
        <div className="table-wrap">
          <table>
            <TableHead columns={['Slug', 'Name', 'Status', 'Cluster', 'Schema', 'Created']} actions />
            <tbody>
              {items.map((t) => (
                <tr key={t.slug} data-testid={`tenant-${t.slug}`}>
                  <td>
                    <Link to={`/tenants/${t.slug}`}>{t.slug}</Link>
                  </td>
                  <td>{t.name}</td>
                  <td>
                    <span className={`badge status-${t.status}`} data-testid="tenant-status">
                      {t.status}
                    </span>
                  </td>
                  <td data-testid="tenant-cluster">{t.cluster}</td>
                  <td>v{t.schema_version}</td>
                  <td>{formatTime(t.created_at)}</td>
                  <td>
                    <TenantActions tenant={t} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Modal open={creating} onOpenChange={setCreating} title="New tenant">
        {creating ? (
          <CreateTenant
            onDone={(m) => {
              setCreating(false);
              setMessage(m);
            }}
          />
        ) : null}
      </Modal>
    </div>
  );
}
