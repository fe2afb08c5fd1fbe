import { useEffect, useMemo, useState, type ReactNode } from 'react';
import { useSearchParams } from 'react-router';
import { useInfiniteQuery, useMutation } from '@tanstack/react-query';
import { api, download, formatTime, isoOfLocal, saveBlob, type AuditFilters, type AuditPage, type AuditRecord, type AuditVerification } from '../api';
import { ErrorBox, Loading, TableHead } from './common';

// An audit trail (a tenant's or the platform's, by `base`): filters kept in
// the URL, pages of 100 newest first, an export with the same filters and a
// check of the whole chain.

const TEXT_FIELDS = [
  { key: 'actor', label: 'Actor', placeholder: 'email, name or id' },
  { key: 'action', label: 'Action', placeholder: 'e.g. variable.put' },
  { key: 'resource_kind', label: 'Resource kind', placeholder: 'e.g. integration' },
  { key: 'resource', label: 'Resource name', placeholder: 'any' },
] as const;
const FIELDS = ['actor', 'action', 'resource_kind', 'resource', 'since', 'until'] as const;
type Field = (typeof FIELDS)[number];
type Draft = Record<Field, string>;

function draftOf(params: URLSearchParams): Draft {
  return Object.fromEntries(FIELDS.map((f) => [f, params.get(f) ?? ''])) as Draft;
}

function paramsOf(draft: Draft): URLSearchParams {
  const next = new URLSearchParams();
  for (const f of FIELDS) {
    const v = draft[f].trim();
    if (v) next.set(f, v);
  }
  return next;
}

/** The API's filters for the applied ones (`since`/`until` from local time to RFC 3339 UTC). */
function filtersOf(applied: Draft): AuditFilters {
  return {
    actor: applied.actor || undefined,
    action: applied.action || undefined,
    resource_kind: applied.resource_kind || undefined,
    resource: applied.resource || undefined,
    since: isoOfLocal(applied.since),
    until: isoOfLocal(applied.until),
  };
}

function Detail({ value }: { value: unknown }) {
  const empty = value === null || value === undefined || (typeof value === 'object' && Object.keys(value as object).length === 0);
  if (empty) return <span className="muted">—</span>;
  const text = JSON.stringify(value);
  if (text.length <= 60) return <code>{text}</code>;
  return (
    <details className="audit-detail">
      <summary>
        <code className="truncate">{text}</code>
      </summary>
      <pre className="code">{JSON.stringify(value, null, 2)}</pre>
    </details>
  );
}

function Row({ r }: { r: AuditRecord }) {
  return (
    <tr data-testid="audit-row" data-action={r.action} data-via={r.via}>
      <td className="mono small">{r.seq}</td>
      <td>
        <time dateTime={r.at} title={r.at}>
          {formatTime(r.at)}
        </time>
      </td>
      <td>
        <span title={r.actor_id ?? undefined}>{r.actor_name}</span> <span className="badge">{r.actor_kind.replace(/_/g, ' ')}</span>
      </td>
      <td>
        <span className="badge">{r.via}</span>
      </td>
      <td>
        <code>{r.action}</code>
      </td>
      <td>
        <span className="muted">{r.resource_kind}</span> {r.resource_name}
      </td>
      <td>
        <Detail value={r.detail} />
      </td>
      <td className="mono small">{r.address ?? '—'}</td>
    </tr>
  );
}

function VerifyResult({ result }: { result: AuditVerification }) {
  if (result.ok) {
    return (
      <p className="notice" role="status">
        Chain intact: {result.records} record{result.records === 1 ? '' : 's'}
        {result.records > 0 ? <span className="muted"> (newest #{result.head_seq})</span> : null}
      </p>
    );
  }
  return (
    <div className="error-box" role="alert">
      <strong>
        Chain broken: {result.problems.length} problem{result.problems.length === 1 ? '' : 's'} in {result.records} record{result.records === 1 ? '' : 's'}
      </strong>
      <ul>
        {result.problems.map((p, i) => (
          <li key={`${p.seq}-${i}`}>
            Record #{p.seq}: {p.problem}
          </li>
        ))}
      </ul>
    </div>
  );
}

export function AuditTrail({ base, queryKey, exportName, intro }: { base: string; queryKey: readonly unknown[]; exportName: string; intro?: ReactNode }) {
  const [params, setParams] = useSearchParams();
  const applied = useMemo(() => draftOf(params), [params]);
  const [draft, setDraft] = useState<Draft>(applied);
  // The fields follow the URL (back and forward, a link with filters).
  useEffect(() => setDraft(applied), [applied]);
  const filters = useMemo(() => filtersOf(applied), [applied]);
  const filtered = FIELDS.some((f) => applied[f]);

  const q = useInfiniteQuery({
    queryKey: [...queryKey, 'list', filters],
    queryFn: ({ pageParam, signal }) => api<AuditPage>(base, { query: { ...filters, before: pageParam, limit: 100 }, signal }),
    initialPageParam: null as number | null,
    getNextPageParam: (last) => last.next_before ?? undefined,
    staleTime: 0,
  });
  const rows = q.data?.pages.flatMap((p) => p.items) ?? [];

  const verify = useMutation({ mutationFn: () => api<AuditVerification>(`${base}/verify`) });
  const exporting = useMutation({
    mutationFn: () => download(`${base}/export`, { query: { ...filters }, accept: 'application/x-ndjson' }),
    onSuccess: ({ blob, filename }) => saveBlob(blob, filename ?? `${exportName}-audit.ndjson`),
  });

  const apply = () => {
    const next = paramsOf(draft);
    if (next.toString() === paramsOf(applied).toString()) q.refetch();
    else setParams(next, { replace: true });
  };
  const clear = () => {
    const empty = draftOf(new URLSearchParams());
    setDraft(empty);
    if (filtered) setParams(new URLSearchParams(), { replace: true });
  };
  const field = (key: Field, value: string) => setDraft((d) => ({ ...d, [key]: value }));

  return (
    <div className="page">
      <div className="page-head">
        <h1>Audit trail</h1>
        <div className="actions">
          <button type="button" onClick={() => verify.mutate()} disabled={verify.isPending}>
            {verify.isPending ? 'Verifying…' : 'Verify chain'}
          </button>
          <button type="button" onClick={() => exporting.mutate()} disabled={exporting.isPending} title="Every record matching the applied filters, oldest first, one JSON per line">
            {exporting.isPending ? 'Exporting…' : 'Export'}
          </button>
        </div>
      </div>
      {intro}
      {verify.data ? <VerifyResult result={verify.data} /> : null}
      <ErrorBox error={verify.error} title="The chain could not be verified" />
      <ErrorBox error={exporting.error} title="Not exported" />
      <form
        className="toolbar"
        aria-label="Filters"
        onSubmit={(e) => {
          e.preventDefault();
          apply();
        }}
      >
        {TEXT_FIELDS.map((f) => (
          <div className="field inline" key={f.key}>
            <label htmlFor={`audit-${f.key}`}>{f.label}</label>
            <input id={`audit-${f.key}`} type="search" value={draft[f.key]} onChange={(e) => field(f.key, e.target.value)} placeholder={f.placeholder} autoComplete="off" />
          </div>
        ))}
        <div className="field inline">
          <label htmlFor="audit-since">Since</label>
          <input id="audit-since" type="datetime-local" step={1} value={draft.since} onChange={(e) => field('since', e.target.value)} />
        </div>
        <div className="field inline">
          <label htmlFor="audit-until">Until</label>
          <input id="audit-until" type="datetime-local" step={1} value={draft.until} onChange={(e) => field('until', e.target.value)} />
        </div>
        <div className="actions">
          <button type="submit" className="primary">
            Apply filters
          </button>
          <button type="button" onClick={clear}>
            Clear filters
          </button>
        </div>
      </form>
      <ErrorBox error={q.error} />
      {q.isLoading ? <Loading /> : null}
      {q.data && rows.length === 0 ? <p className="empty">{filtered ? 'No audit records match.' : 'No audit records yet.'}</p> : null}
      {rows.length > 0 ? (
        <div className="table-wrap">
          <table aria-label="Audit records">
            <TableHead columns={['#', 'Time', 'Actor', 'Via', 'Action', 'Resource', 'Detail', 'Address']} />
            <tbody>
              {rows.map((r) => (
                <Row key={r.seq} r={r} />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {q.hasNextPage ? (
        <button type="button" onClick={() => q.fetchNextPage()} disabled={q.isFetchingNextPage}>
          {q.isFetchingNextPage ? 'Loading…' : 'Older records'}
        </button>
      ) : null}
    </div>
  );
}
