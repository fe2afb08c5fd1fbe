import { lazy, Suspense, useEffect, useMemo, useState } from 'react';
import { Link, useParams } from 'react-router';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { parseAllDocuments, stringify } from 'yaml';
import { api, ApiError, readingOrder, type Definition, type DefinitionError, type Integration } from '../api';
import { useRole } from '../auth';
import { ErrorBox, Loading, useDocumentTitle } from '../components/common';
import { YamlEditor } from './YamlEditor';
import { apiPage } from '../tenant/Apis';

const FlowGraph = lazy(() => import('../graph/FlowGraph'));

const TEMPLATE = `apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: my-integration
  description: What it does
spec:
  triggers:
    - manual: {}
  steps:
    - name: shape
      transform:
        expression: '.trigger.body'
    - name: done
      log:
        message: 'done: \${{ .steps.shape }}'
`;

interface ApplyItem {
  kind: string;
  name: string;
  version?: number;
  result: string;
}

type Outcome = { mode: 'validate' | 'save'; items: ApplyItem[]; stored: boolean } | null;

function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

function Preview({ text }: { text: string }) {
  const debounced = useDebounced(text, 500);
  const def = useMemo(() => {
    try {
      const docs = parseAllDocuments(debounced);
      for (const d of Array.isArray(docs) ? docs : [docs]) {
        if (d.errors.length) return null;
        const js = d.toJS() as Definition | null;
        if (js && js.kind === 'Integration' && js.spec) return js;
      }
    } catch {
      return null;
    }
    return null;
  }, [debounced]);
  if (!def) return <p className="muted">The preview shows the first integration once the YAML parses.</p>;
  return (
    <Suspense fallback={<Loading label="Loading the graph…" />}>
      <FlowGraph definition={def} />
    </Suspense>
  );
}

export default function EditorPage() {
  const { name } = useParams();
  useDocumentTitle(name ? `Edit ${name}` : 'New integration');
  const { canEdit } = useRole();
  const qc = useQueryClient();
  const schema = useQuery({ queryKey: ['schema'], queryFn: () => api<unknown>('/api/schema'), staleTime: Infinity });
  const current = useQuery({
    queryKey: ['integration', name],
    queryFn: () => api<Integration>(`/api/integrations/${encodeURIComponent(name!)}`),
    enabled: !!name,
  });
  const initial = useMemo(() => (name ? (current.data ? stringify(readingOrder(current.data.definition), { lineWidth: 0 }) : null) : TEMPLATE), [name, current.data]);
  const [text, setText] = useState<string | null>(null);
  const [errors, setErrors] = useState<DefinitionError[]>([]);
  const [failure, setFailure] = useState<unknown>(null);
  const [outcome, setOutcome] = useState<Outcome>(null);
  const [busy, setBusy] = useState<'validate' | 'save' | null>(null);
  const [showPreview, setShowPreview] = useState(true);
  const doc = text ?? initial ?? '';

  async function submit(mode: 'validate' | 'save') {
    setBusy(mode);
    setFailure(null);
    setOutcome(null);
    try {
      const res = await api<{ items: ApplyItem[]; dry_run?: boolean }>('/api/apply', {
        method: 'POST',
        query: mode === 'validate' ? { dry_run: 'true' } : undefined,
        raw: { contentType: 'application/yaml', text: doc },
      });
      setErrors([]);
      const stored = mode === 'save' || res.dry_run !== true;
      setOutcome({ mode, items: res.items ?? [], stored });
      if (stored) {
        await qc.invalidateQueries({ queryKey: ['integrations'] });
        for (const i of res.items ?? []) {
          if (i.kind === 'Integration') qc.invalidateQueries({ queryKey: ['integration', i.name] });
          if (i.kind === 'Connection') qc.invalidateQueries({ queryKey: ['connections'] });
          if (i.kind === 'Api') {
            qc.invalidateQueries({ queryKey: ['apis'] });
            qc.invalidateQueries({ queryKey: ['api', i.name] });
          }
        }
      }
    } catch (e) {
      if (e instanceof ApiError && e.code === 'invalid_definition' && Array.isArray(e.body.errors)) {
        setErrors(e.body.errors);
      } else {
        setErrors([]);
      }
      setFailure(e);
    } finally {
      setBusy(null);
    }
  }

  if (!canEdit) {
    return (
      <div className="page">
        <h1>Editor</h1>
        <p>Your role can read integrations but not change them.</p>
      </div>
    );
  }
  return (
    <div className="page editor-page">
      <p className="crumbs">
        <Link to="/integrations">Integrations</Link> /{' '}
        {name ? (
          <>
            <Link to={`/integrations/${encodeURIComponent(name)}`}>{name}</Link> /
          </>
        ) : null}
      </p>
      <div className="page-head">
        <h1>{name ? `Edit ${name}` : 'New integration'}</h1>
        <div className="actions">
          <button type="button" onClick={() => submit('validate')} disabled={busy !== null || initial === null}>
            {busy === 'validate' ? 'Validating…' : 'Validate'}
          </button>
          <button type="button" className="primary" onClick={() => submit('save')} disabled={busy !== null || initial === null}>
            {busy === 'save' ? 'Saving…' : 'Save'}
          </button>
        </div>
      </div>
      <p className="muted">
        A <code>tessera.dev/v1</code> file: integrations and connections, several documents separated by <code>---</code>. Completion (Ctrl-Space) and checks come from the
        server&apos;s schema.
      </p>
      <ErrorBox error={current.error} />
      {schema.error ? <ErrorBox error={schema.error} title="The schema could not be loaded: no completion" /> : null}
      {initial === null || schema.isLoading ? (
        <Loading label="Loading…" />
      ) : (
        <YamlEditor key={name ?? 'new'} initial={initial} schema={schema.data} errors={errors} onChange={setText} label="Definition (YAML)" />
      )}
      <div aria-live="polite">
        {failure ? (
          <div className="problems" role="alert">
            <ErrorBox error={failure} title={errors.length ? 'The definition has problems; nothing was stored' : 'The request failed'} />
            {errors.length ? (
              <ul aria-label="Problems" className="problem-list">
                {errors.map((e, i) => (
                  <li key={i} data-line={e.line ?? undefined}>
                    {e.line ? (
                      <strong>
                        Line {e.line}
                        {e.column ? `, column ${e.column}` : ''}
                      </strong>
                    ) : (
                      <strong>Document {e.document ?? ''}</strong>
                    )}
                    {e.path ? (
                      <>
                        {' '}
                        <code>{e.path}</code>
                      </>
                    ) : null}
                    : {e.message}
                  </li>
                ))}
              </ul>
            ) : null}
          </div>
        ) : null}
        {outcome ? (
          <div className="notice" role="status">
            <strong>{outcome.mode === 'save' ? 'Saved:' : outcome.stored ? 'Valid, and stored: this server does not support dry runs yet.' : 'Valid. Saving it would give:'}</strong>
            <ul>
              {outcome.items.map((i) => (
                <li key={`${i.kind}/${i.name}`}>
                  {i.kind === 'Integration' ? (
                    <Link to={`/integrations/${encodeURIComponent(i.name)}`}>{`integration/${i.name}`}</Link>
                  ) : i.kind === 'Api' && outcome.stored ? (
                    <Link to={apiPage(i.name)}>{`api/${i.name}`}</Link>
                  ) : (
                    `${i.kind.toLowerCase()}/${i.name}`
                  )} {i.result}
                  {i.version ? ` (version ${i.version})` : ''}
                </li>
              ))}
            </ul>
          </div>
        ) : null}
      </div>
      <section aria-labelledby="preview-h">
        <div className="page-head">
          <h2 id="preview-h">Flow preview</h2>
          <button type="button" aria-expanded={showPreview} onClick={() => setShowPreview((s) => !s)}>
            {showPreview ? 'Hide preview' : 'Show preview'}
          </button>
        </div>
        {showPreview ? <Preview text={doc} /> : null}
      </section>
    </div>
  );
}
