import { useId, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime, type Page } from '../api';
import { useRole } from '../auth';
import { ConfirmDialog, ErrorBox, Loading, Modal, TableHead, useDocumentTitle } from '../components/common';

interface Variable {
  name: string;
  value: unknown;
  description: string;
  updated_at: string;
}

function VariableForm({ existing, onDone }: { existing: Variable | null; onDone(): void }) {
  const qc = useQueryClient();
  const id = useId();
  const [name, setName] = useState(existing?.name ?? '');
  const [value, setValue] = useState(existing ? JSON.stringify(existing.value, null, 2) : '""');
  const [description, setDescription] = useState(existing?.description ?? '');
  const [invalid, setInvalid] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: (parsed: unknown) => api(`/api/variables/${encodeURIComponent(name.trim())}`, { method: 'PUT', body: { value: parsed, description } }),
    onSuccess: () => {
      qc.invalidateQueries({ queryKey: ['variables'] });
      onDone();
    },
  });
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        try {
          const parsed = JSON.parse(value);
          setInvalid(null);
          save.mutate(parsed);
        } catch (err) {
          setInvalid(`Not valid JSON: ${(err as Error).message}`);
        }
      }}
    >
      <div className="field">
        <label htmlFor={`${id}-n`}>Name</label>
        <input id={`${id}-n`} value={name} onChange={(e) => setName(e.target.value)} required readOnly={!!existing} />
      </div>
      <div className="field">
        <label htmlFor={`${id}-v`}>Value (JSON)</label>
        <textarea id={`${id}-v`} className="mono" rows={8} value={value} onChange={(e) => setValue(e.target.value)} aria-invalid={invalid ? true : undefined} />
        {invalid ? (
          <p className="field-error" role="alert">
            {invalid}
          </p>
        ) : null}
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
          Save variable
        </button>
      </div>
    </form>
  );
}

export function VariablesPage() {
  useDocumentTitle('Variables');
  const { canEdit } = useRole();
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['variables'], queryFn: () => api<Page<Variable>>('/api/variables') });
  const [editing, setEditing] = useState<Variable | 'new' | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  return (
    <div className="page">
      <div className="page-head">
        <h1>Variables</h1>
        {canEdit ? (
          <button type="button" className="primary" onClick={() => setEditing('new')}>
            New variable
          </button>
        ) : null}
      </div>
      <p className="muted">
        Tenant-wide JSON values, read by integrations as <code>.vars.NAME</code>.
      </p>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && q.data.items.length === 0 ? <p className="empty">No variables yet.</p> : null}
      {q.data && q.data.items.length ? (
        <div className="table-wrap">
          <table>
            <TableHead columns={['Name', 'Value', 'Description', 'Updated']} actions={canEdit} />
            <tbody>
              {q.data.items.map((v) => (
                <tr key={v.name}>
                  <td>{v.name}</td>
                  <td>
                    <code className="truncate">{JSON.stringify(v.value)}</code>
                  </td>
                  <td>{v.description}</td>
                  <td>{formatTime(v.updated_at)}</td>
                  {canEdit ? (
                    <td className="row-actions">
                      <button type="button" onClick={() => setEditing(v)} aria-label={`Edit ${v.name}`}>
                        Edit
                      </button>
                      <button type="button" className="danger" onClick={() => setDeleting(v.name)} aria-label={`Delete ${v.name}`}>
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
      <Modal open={editing !== null} onOpenChange={(o) => !o && setEditing(null)} title={editing === 'new' ? 'New variable' : 'Edit variable'}>
        {editing !== null ? <VariableForm existing={editing === 'new' ? null : editing} onDone={() => setEditing(null)} /> : null}
      </Modal>
      <ConfirmDialog
        open={deleting !== null}
        onOpenChange={(o) => !o && setDeleting(null)}
        danger
        title={`Delete variable ${deleting}?`}
        description="Integrations reading it get null."
        confirmLabel="Delete"
        onConfirm={async () => {
          await api(`/api/variables/${encodeURIComponent(deleting!)}`, { method: 'DELETE' });
          await qc.invalidateQueries({ queryKey: ['variables'] });
        }}
      />
    </div>
  );
}
