import { useId, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime, ROLES, roleAtLeast, type Page, type Role } from '../api';
import { useAuth, useRole } from '../auth';
import { ConfirmDialog, ErrorBox, Loading, Modal, RoleField, TableHead, useDocumentTitle } from '../components/common';

interface User {
  id: string;
  email: string;
  display_name: string;
  role: Role;
  disabled: boolean;
  created_at: string;
  updated_at: string;
}

function NewUser({ onDone, myRole }: { onDone(): void; myRole: Role }) {
  const qc = useQueryClient();
  const id = useId();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<Role>('viewer');
  const [displayName, setDisplayName] = useState('');
  const create = useMutation({
    mutationFn: () => api('/api/users', { method: 'POST', body: { email: email.trim(), password, role, display_name: displayName } }),
    onSuccess: () => {
      qc.invalidateQueries({ queryKey: ['users'] });
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
        <label htmlFor={`${id}-e`}>Email</label>
        <input id={`${id}-e`} type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
      </div>
      <div className="field">
        <label htmlFor={`${id}-dn`}>Display name</label>
        <input id={`${id}-dn`} value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor={`${id}-p`}>Password</label>
        <input id={`${id}-p`} type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} required minLength={8} />
      </div>
      <RoleField id={`${id}-r`} value={role} myRole={myRole} onChange={setRole} />
      <ErrorBox error={create.error} title="Not created" />
      <div className="dialog-actions">
        <button type="button" onClick={onDone}>
          Close
        </button>
        <button type="submit" className="primary" disabled={create.isPending}>
          Create user
        </button>
      </div>
    </form>
  );
}

function RoleSelect({ user, myRole }: { user: User; myRole: Role }) {
  const qc = useQueryClient();
  const change = useMutation({
    mutationFn: (role: Role) => api(`/api/users/${user.id}`, { method: 'PATCH', body: { role } }),
    onSettled: () => qc.invalidateQueries({ queryKey: ['users'] }),
  });
  return (
    <>
      <label className="sr-only" htmlFor={`role-${user.id}`}>
        Role of {user.email}
      </label>
      <select id={`role-${user.id}`} value={user.role} disabled={change.isPending || !roleAtLeast(myRole, user.role)} onChange={(e) => change.mutate(e.target.value as Role)}>
        {ROLES.filter((r) => roleAtLeast(myRole, r) || r === user.role).map((r) => (
          <option key={r} value={r}>
            {r}
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

export function UsersPage() {
  useDocumentTitle('Users');
  const { isAdmin, role } = useRole();
  const { me } = useAuth();
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['users'], queryFn: () => api<Page<User>>('/api/users') });
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<User | null>(null);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Users</h1>
        {isAdmin ? (
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New user
          </button>
        ) : null}
      </div>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data ? (
        <div className="table-wrap">
          <table>
            <TableHead columns={['Email', 'Name', 'Role', 'Created']} actions={isAdmin} />
            <tbody>
              {q.data.items.map((u) => (
                <tr key={u.id}>
                  <td>
                    {u.email} {u.disabled ? <span className="badge">disabled</span> : null}
                  </td>
                  <td>{u.display_name}</td>
                  <td>{isAdmin && role && u.id !== me?.principal.id ? <RoleSelect user={u} myRole={role} /> : u.role}</td>
                  <td>{formatTime(u.created_at)}</td>
                  {isAdmin ? (
                    <td>
                      {u.id !== me?.principal.id ? (
                        <button type="button" className="danger" onClick={() => setDeleting(u)} aria-label={`Delete ${u.email}`}>
                          Delete
                        </button>
                      ) : (
                        <span className="muted">you</span>
                      )}
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Modal open={creating} onOpenChange={setCreating} title="New user">
        {creating && role ? <NewUser onDone={() => setCreating(false)} myRole={role} /> : null}
      </Modal>
      <ConfirmDialog
        open={deleting !== null}
        onOpenChange={(o) => !o && setDeleting(null)}
        danger
        title={`Delete ${deleting?.email}?`}
        description="They can no longer sign in to this tenant."
        confirmLabel="Delete"
        onConfirm={async () => {
          await api(`/api/users/${deleting!.id}`, { method: 'DELETE' });
          await qc.invalidateQueries({ queryKey: ['users'] });
        }}
      />
    </div>
  );
}
