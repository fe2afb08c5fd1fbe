import { useQuery } from '@tanstack/react-query';
import { diffLines } from 'diff';
import { stringify } from 'yaml';
import { api, readingOrder, type Integration } from '../api';
import { ErrorBox, Loading } from '../components/common';

function useVersion(name: string, version: number) {
  return useQuery({
    queryKey: ['integration', name, 'version', version],
    queryFn: () => api<Integration>(`/api/integrations/${encodeURIComponent(name)}/versions/${version}`),
    staleTime: Infinity,
  });
}

export default function VersionDiff({ name, from, to }: { name: string; from: number; to: number }) {
  const a = useVersion(name, from);
  const b = useVersion(name, to);
  if (a.error || b.error) return <ErrorBox error={a.error ?? b.error} />;
  if (!a.data || !b.data) return <Loading label="Loading versions…" />;
  const parts = diffLines(stringify(readingOrder(a.data.definition), { lineWidth: 0 }), stringify(readingOrder(b.data.definition), { lineWidth: 0 }));
  const changed = parts.some((p) => p.added || p.removed);
  return (
    <div>
      <p className="muted">
        Differences from v{from} to v{to}
        {changed ? '' : ': none, the definitions are the same.'}
      </p>
      <pre className="code diff" aria-label={`Diff between version ${from} and version ${to}`}>
        {parts.map((p, i) => {
          const lines = p.value.replace(/\n$/, '').split('\n');
          const sign = p.added ? '+' : p.removed ? '-' : ' ';
          const cls = p.added ? 'diff-add' : p.removed ? 'diff-del' : 'diff-same';
          return (
            <span key={i} className={cls}>
              {lines.map((l) => `${sign} ${l}`).join('\n') + '\n'}
            </span>
          );
        })}
      </pre>
    </div>
  );
}
