import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const SERIES: { key: string; color: string }[] = [
  { key: 'succeeded', color: '#1a7f37' },
  { key: 'failed', color: '#cf222e' },
  { key: 'cancelled', color: '#8c959f' },
];

/** Executions per bucket over the last `hours`, stacked by state. */
export default function SeriesChart({ series, hours }: { series: ({ bucket: string } & Record<string, number | string>)[]; hours: number }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const xs = series.map((p) => new Date(p.bucket).getTime() / 1000);
    const raw = SERIES.map((s) => series.map((p) => Number(p[s.key] ?? 0)));
    // Stacked: each state's bar is drawn as the sum of it and the states
    // after it, the tallest first, so every state shows as its own band.
    const stacked = raw.map((_, i) => xs.map((_, j) => raw.slice(i).reduce((sum, r) => sum + r[j], 0)));
    const data: uPlot.AlignedData = [xs, ...stacked];
    const bars = uPlot.paths.bars?.({ size: [0.6, 40] });
    const plot = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 220,
        series: [
          {},
          ...SERIES.map((s, i) => ({
            label: s.key,
            stroke: s.color,
            fill: `${s.color}cc`,
            width: 1,
            paths: bars,
            // The legend shows the state's own count, not the stacked sum.
            value: (_u: uPlot, _v: number | null, _si: number, idx: number | null) => (idx === null ? '' : String(raw[i][idx] ?? 0)),
          })),
        ],
        axes: [{}, { label: 'executions' }],
        // The whole window, whatever buckets have data (one bucket alone would span years).
        scales: {
          x: {
            time: true,
            range: (): uPlot.Range.MinMax => {
              const bucket = hours > 24 ? 86_400 : 3_600;
              const now = Math.ceil(Date.now() / 1000 / bucket) * bucket;
              return [now - hours * 3_600 - bucket, now];
            },
          },
        },
      },
      data,
      el,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [series, hours]);
  return <div ref={host} className="chart" role="img" aria-label="Executions per state over time" />;
}
