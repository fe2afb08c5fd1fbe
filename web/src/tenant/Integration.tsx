import { lazy, Suspense, useEffect, useId, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, formatTime, readingOrder, type Definition, type Integration, type Page, type VersionSummary } from '../api';
import { useRole } from '../auth';
import { ConfirmDialog, ErrorBox, Loading, Modal, TableHead, useDocumentTitle } from '../components/common';

const FlowGraph = lazy(() => import('../graph/FlowGraph'));
const VersionDiff = lazy(() => import('./VersionDiff'));

export function useYaml(value: unknown): string | null {
  const [text, setText] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    if (value === undefined) return;
    import('yaml').then((m) => {
      if (live) setText(m.stringify(readingOrder(value), { lineWidth: 0 }));
    });
    return () => {
      live = false;
    };
  }, [value]);
  return text;
}

function triggerText(t: Record<string, unknown>): { kind: string; detail: string } {
  const kind = Object.keys(t)[0] ?? 'unknown';
  const v = t[kind];
  const detail = v && typeof v === 'object' ? Object.entries(v as object).map(([k, x]) => `${k}: ${typeof x === 'object' ? JSON.stringify(x) : String(x)}`).join(', ') : '';
  return { kind, detail };
}

export function GraphSection({ definition, steps, onSelect, selected }: Parameters<typeof FlowGraph>[0]) {
  return (
    <Suspense fallback={<Loading label="Loading the graph…" />}>
      <FlowGraph definition={definition} steps={steps} onSelect={onSelect} selected={selected} />
    </Suspense>
  );
}

function RunDialog({ name, open, onOpenChange }: { name: string; open: boolean; onOpenChange(o: boolean): void }) {
  const [payload, setPayload] = useState('{}');
  const [invalid, setInvalid] = useState<string | null>(null);
  const navigate = useNavigate();
  const qc = useQueryClient();
  const id = useId();
  const run = useMutation({
    mutationFn: (body: unknown) => api<{ id: string; state: string }>(`/api/integrations/${encodeURIComponent(name)}/run`, { method: 'POST', body }),
    onSuccess: (res) => {
      qc.invalidateQueries({ queryKey: ['executions'] });
      onOpenChange(false);
      navigate(`/executions/${res.id}`);
    },
  });
  return (
    <Modal open={open} onOpenChange={onOpenChange} title={`Run ${name} now`} description="The payload becomes .trigger.body of the new execution.">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          let body: unknown;
          try {
            body = payload.trim() === '' ? null : JSON.parse(payload);
          } catch (err) {
            setInvalid(`The payload is not valid JSON: ${(err as Error).message}`);
            return;
          }
          setInvalid(null);
          run.mutate(body === null ? undefined : body);
        }}
      >
        <div className="field">
          <label htmlFor={id}>Payload (JSON)</label>
          <textarea id={id} rows={8} className="mono" value={payload} onChange={(e) => setPayload(e.target.value)} aria-invalid={invalid ? true : undefined} aria-describedby={invalid ? `${id}-err` : undefined} />
          {invalid ? (
            <p id={`${id}-err`} className="field-error" role="alert">
              {invalid}
            </p>
          ) : null}
        </div>
        <ErrorBox error={run.error} title="The run was refused" />
        <div className="dialog-actions">
          <button type="button" onClick={() => onOpenChange(false)}>
            Close
          </button>
          <button type="submit" className="primary" disabled={run.isPending}>
            {run.isPending ? 'Starting…' : 'Run'}
          </button>
        </div>
      </form>
    </Modal>
  );
}

function Versions({ name, current }: { name: string; current: number }) {
  const { canEdit } = useRole();
  const qc = useQueryClient();
  const versions = useQuery({ queryKey: ['integration', name, 'versions'], queryFn: () => api<Page<VersionSummary>>(`/api/integrations/${encodeURIComponent(name)}/versions`) });
  const [from, setFrom] = useState<number | null>(null);
  const [to, setTo] = useState<number | null>(null);
  const [rollbackTo, setRollbackTo] = useState<number | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const list = [...(versions.data?.items ?? [])].sort((a, b) => b.version - a.version);
  const a = from ?? (list.length > 1 ? list[1]!.version : list[0]?.version ?? null);
  const b = to ?? list[0]?.version ?? null;
  return (
    <section aria-labelledby="versions-h">
      <h2 id="versions-h">Versions</h2>
      <ErrorBox error={versions.error} />
      {message ? (
        <p className="notice" role="status">
          {message}
        </p>
      ) : null}
      <div className="table-wrap">
        <table>
          <TableHead columns={['Version', 'Created', 'By']} actions />
          <tbody>
            {list.map((v) => (
              <tr key={v.version} data-testid={`version-${v.version}`}>
                <td>
                  v{v.version} {v.version === current ? <span className="badge">current</span> : null}
                </td>
                <td>{formatTime(v.created_at)}</td>
                <td className="mono small">{v.created_by ?? '—'}</td>
                <td>
                  {canEdit && v.version !== current ? (
                    <button type="button" onClick={() => setRollbackTo(v.version)} aria-label={`Rollback to version ${v.version}`}>
                      Rollback
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {list.length > 0 ? (
        <div className="diff-controls">
          <div className="field inline">
            <label htmlFor="diff-from">Compare version</label>
            <select id="diff-from" value={a ?? ''} onChange={(e) => setFrom(Number(e.target.value))}>
              {list.map((v) => (
                <option key={v.version} value={v.version}>
                  v{v.version}
                </option>
              ))}
            </select>
          </div>
          <div className="field inline">
            <label htmlFor="diff-to">with version</label>
            <select id="diff-to" value={b ?? ''} onChange={(e) => setTo(Number(e.target.value))}>
              {list.map((v) => (
                <option key={v.version} value={v.version}>
                  v{v.version}
                </option>
              ))}
            </select>
          </div>
        </div>
      ) : null}
      {a !== null && b !== null ? (
        <Suspense fallback={<Loading label="Loading the diff…" />}>
          <VersionDiff name={name} from={a} to={b} />
        </Suspense>
      ) : null}
      <ConfirmDialog
        open={rollbackTo !== null}
        onOpenChange={(o) => !o && setRollbackTo(null)}
        title={`Roll back to version ${rollbackTo}?`}
        description={`A new version of ${name} is created with version ${rollbackTo}'s definition. Nothing is deleted.`}
        confirmLabel="Rollback"
        onConfirm={async () => {
          const res = await api<{ version?: number }>(`/api/integrations/${encodeURIComponent(name)}/rollback`, { method: 'POST', body: { version: rollbackTo } });
          setMessage(`Rolled back to version ${rollbackTo}${res?.version ? `: version ${res.version} created` : ''}.`);
          await qc.invalidateQueries({ queryKey: ['integration', name] });
          await qc.invalidateQueries({ queryKey: ['integrations'] });
        }}
      />
    </section>
  );
}

export function IntegrationPage() {
  const { name = '' } = useParams();
  useDocumentTitle(name);
  const { canEdit } = useRole();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const [running, setRunning] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const q = useQuery({ queryKey: ['integration', name], queryFn: () => api<Integration>(`/api/integrations/${encodeURIComponent(name)}`) });
  const yamlText = useYaml(q.data?.definition);
  const def: Definition | undefined = q.data?.definition;
  // Enabling or disabling is a new version with `spec.enabled` changed, applied like any other.
  const toggle = useMutation({
    mutationFn: async (enabled: boolean) => {
      if (!def) return;
      const next = { ...def, spec: { ...def.spec, enabled } };
      await api('/api/apply', { method: 'POST', raw: { contentType: 'application/json', text: JSON.stringify(next) } });
    },
    onSuccess: async () => {
      await qc.invalidateQueries({ queryKey: ['integration', name] });
      await qc.invalidateQueries({ queryKey: ['integrations'] });
    },
  });
  return (
    <div className="page">
      <p className="crumbs">
        <Link to="/integrations">Integrations</Link> /
      </p>
      <div className="page-head">
        <h1>{name}</h1>
        {q.data ? (
          <div className="actions">
            <Link className="button" to={`/executions?integration=${encodeURIComponent(name)}`}>
              Executions
            </Link>
            {canEdit ? (
              <>
                <button type="button" className="primary" onClick={() => setRunning(true)} disabled={!q.data.enabled}>
                  Run now
                </button>
                <button type="button" onClick={() => toggle.mutate(!q.data.enabled)} disabled={toggle.isPending}>
                  {q.data.enabled ? 'Disable' : 'Enable'}
                </button>
                <Link className="button" to={`/integrations/${encodeURIComponent(name)}/edit`}>
                  Edit
                </Link>
                <button type="button" className="danger" onClick={() => setDeleting(true)}>
                  Delete
                </button>
              </>
            ) : null}
          </div>
        ) : null}
      </div>
      <ErrorBox error={q.error ?? toggle.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && def ? (
        <>
          <p>
            {def.metadata.description ? <span>{def.metadata.description} · </span> : null}
            Version <strong>v{q.data.version}</strong> · {q.data.enabled ? 'enabled' : 'disabled'} · updated {formatTime(q.data.updated_at)}
          </p>
          <section aria-labelledby="triggers-h">
            <h2 id="triggers-h">Triggers</h2>
            {(def.spec.triggers ?? []).length === 0 ? <p className="muted">No triggers: run it from here or through the API.</p> : null}
            <ul className="triggers">
              {(def.spec.triggers ?? []).map((t, i) => {
                const { kind, detail } = triggerText(t);
                return (
                  <li key={i}>
                    <span className="badge">{kind}</span> {detail}
                    {kind === 'webhook' ? <code className="small"> POST /hooks/{name}</code> : null}
                  </li>
                );
              })}
            </ul>
          </section>
          <section aria-labelledby="graph-h">
            <h2 id="graph-h">Flow</h2>
            <GraphSection definition={def} />
          </section>
          <section aria-labelledby="def-h">
            <h2 id="def-h">Current definition</h2>
            <pre className="code" aria-label="Current definition (YAML)" data-testid="definition-yaml">
              {yamlText ?? 'Loading…'}
            </pre>
          </section>
          <Versions name={name} current={q.data.version} />
          <RunDialog name={name} open={running} onOpenChange={setRunning} />
          <ConfirmDialog
            open={deleting}
            onOpenChange={setDeleting}
            danger
            title={`Delete ${name}?`}
            description="The integration, all its versions and their executions are deleted. This cannot be undone."
            typed={name}
            confirmLabel="Delete"
            onConfirm={async () => {
              await api(`/api/integrations/${encodeURIComponent(name)}`, { method: 'DELETE' });
              qc.removeQueries({ queryKey: ['integration', name] });
              await qc.invalidateQueries({ queryKey: ['integrations'] });
              navigate('/integrations');
            }}
          />
        </>
      ) : null}
    </div>
  );
}
