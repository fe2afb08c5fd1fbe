import { useCallback, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, durationMs, formatDuration, formatTime, isFinished, type Execution, type Integration } from '../api';
import { useRole } from '../auth';
import { ErrorBox, JsonView, Loading, StateBadge, TableHead, useDocumentTitle } from '../components/common';
import { GraphSection } from './Integration';
import { matchingSteps } from '../graph/layout';

function StepPanel({ execution, path, onClose }: { execution: Execution; path: string; onClose(): void }) {
  const found = matchingSteps(path, execution.steps);
  return (
    <aside className="card step-panel" aria-labelledby="step-panel-h" data-testid="step-panel">
      <div className="page-head">
        <h3 id="step-panel-h">Step {path}</h3>
        <button type="button" onClick={onClose}>
          Close step
        </button>
      </div>
      {found.length === 0 ? <p className="muted">This step did not run in this execution.</p> : null}
      {found.map((s) => (
        <div key={s.path} className="step-detail">
          {found.length > 1 ? <h4 className="mono">{s.path}</h4> : null}
          <p>
            <StateBadge state={s.state} /> attempt {s.attempt} · {formatDuration(durationMs(s.started_at, s.finished_at))}
          </p>
          <JsonView label="Input" value={s.input} defaultOpen={false} />
          <JsonView label="Output" value={s.output} />
          {s.error ? <JsonView label="Error" value={s.error} /> : null}
        </div>
      ))}
    </aside>
  );
}

export function ExecutionPage() {
  const { id = '' } = useParams();
  useDocumentTitle(`Execution ${id.slice(0, 13)}`);
  const { canEdit } = useRole();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const [selected, setSelected] = useState<string | null>(null);
  const q = useQuery({
    queryKey: ['execution', id],
    queryFn: () => api<Execution>(`/api/executions/${encodeURIComponent(id)}`),
    refetchInterval: (query) => (query.state.data && isFinished(query.state.data.state) ? false : document.hidden ? false : 1000),
    staleTime: 0,
  });
  const ex = q.data;
  const def = useQuery({
    queryKey: ['integration', ex?.integration, 'version', ex?.version],
    queryFn: () => api<Integration>(`/api/integrations/${encodeURIComponent(ex!.integration)}/versions/${ex!.version}`),
    enabled: !!ex,
    staleTime: Infinity,
  });
  const control = useMutation({
    mutationFn: (action: 'retry' | 'cancel') => api<{ id?: string }>(`/api/executions/${encodeURIComponent(id)}/${action}`, { method: 'POST' }),
    onSuccess: (res) => {
      qc.invalidateQueries({ queryKey: ['execution', id] });
      qc.invalidateQueries({ queryKey: ['executions'] });
      if (res && res.id && res.id !== id) navigate(`/executions/${res.id}`);
    },
  });
  const onSelect = useCallback((p: string) => setSelected(p), []);
  return (
    <div className="page">
      <p className="crumbs">
        <Link to="/executions">Executions</Link> /
      </p>
      <div className="page-head">
        <h1>
          Execution <span className="mono small">{id}</span>
        </h1>
        {ex && canEdit ? (
          <div className="actions">
            {ex.state === 'failed' ? (
              <button type="button" className="primary" onClick={() => control.mutate('retry')} disabled={control.isPending}>
                Retry
              </button>
            ) : null}
            {ex.state === 'queued' || ex.state === 'running' ? (
              <button type="button" className="danger" onClick={() => control.mutate('cancel')} disabled={control.isPending}>
                Cancel execution
              </button>
            ) : null}
          </div>
        ) : null}
      </div>
      <ErrorBox error={q.error ?? control.error} />
      {q.isLoading ? <Loading /> : null}
      {ex ? (
        <>
          <dl className="facts">
            <div>
              <dt>State</dt>
              <dd data-testid="execution-state" data-state={ex.state}>
                <StateBadge state={ex.state} />
                {ex.cancel_requested && !isFinished(ex.state) ? <span className="muted"> cancelling…</span> : null}
              </dd>
            </div>
            <div>
              <dt>Integration</dt>
              <dd>
                <Link to={`/integrations/${encodeURIComponent(ex.integration)}`}>{ex.integration}</Link> v{ex.version}
              </dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{formatTime(ex.created_at)}</dd>
            </div>
            <div>
              <dt>Duration</dt>
              <dd>{formatDuration(durationMs(ex.started_at, ex.finished_at))}</dd>
            </div>
            <div>
              <dt>Retries</dt>
              <dd>{ex.retries}</dd>
            </div>
            {ex.parent_id ? (
              <div>
                <dt>Called by</dt>
                <dd>
                  <Link to={`/executions/${ex.parent_id}`}>{ex.parent_id}</Link>
                </dd>
              </div>
            ) : null}
          </dl>
          {!isFinished(ex.state) ? <p className="muted">Live: updates every second until it finishes.</p> : null}
          <section aria-labelledby="graph-h">
            <h2 id="graph-h">Flow</h2>
            {def.error ? <ErrorBox error={def.error} title="The definition could not be loaded" /> : null}
            <div className={selected ? 'graph-with-panel' : undefined}>
              {def.data ? <GraphSection definition={def.data.definition} steps={ex.steps} onSelect={onSelect} selected={selected} /> : <Loading label="Loading the definition…" />}
              {selected ? <StepPanel execution={ex} path={selected} onClose={() => setSelected(null)} /> : null}
            </div>
          </section>
          <section aria-labelledby="timeline-h">
            <h2 id="timeline-h">Timeline</h2>
            {ex.steps.length === 0 ? <p className="muted">No step has run yet.</p> : null}
            <div className="table-wrap">
              <table>
                <TableHead columns={['Step', 'State', 'Attempt', 'Started', 'Finished', 'Duration']} />
                <tbody>
                  {ex.steps.map((s) => (
                    <tr key={s.path}>
                      <td className="mono">
                        <button type="button" className="link" onClick={() => setSelected(s.path)}>
                          {s.path}
                        </button>
                      </td>
                      <td>
                        <StateBadge state={s.state} />
                      </td>
                      <td>{s.attempt}</td>
                      <td>{formatTime(s.started_at)}</td>
                      <td>{formatTime(s.finished_at)}</td>
                      <td>{formatDuration(durationMs(s.started_at, s.finished_at))}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          {ex.children && ex.children.length ? (
            <section>
              <h2>Called executions</h2>
              <ul>
                {ex.children.map((c) => (
                  <li key={c.id}>
                    <Link to={`/executions/${c.id}`}>{c.id}</Link> from step <code>{c.step}</code> {c.state ? <StateBadge state={c.state} /> : null}
                  </li>
                ))}
              </ul>
            </section>
          ) : null}
          <section aria-labelledby="data-h">
            <h2 id="data-h">Data</h2>
            <JsonView label="Trigger" value={ex.trigger} defaultOpen={false} />
            <JsonView label="Execution output" value={ex.output} />
            {ex.error ? <JsonView label="Execution error" value={ex.error} /> : null}
          </section>
        </>
      ) : null}
    </div>
  );
}
