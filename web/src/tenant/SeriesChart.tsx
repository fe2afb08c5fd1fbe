import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  /** The field of each point. */
  key: string;
  /** In the legend; the key when absent. */
  label?: string;
  color: string;
}

const STATES: ChartSeries[] = [
  { key: 'succeeded', color: '#1a7f37' },
  { key: 'failed', color: '#cf222e' },
  { key: 'cancelled', color: '#8c959f' },
];

interface Props {
  series: ({ bucket: string } & Record<string, number | string>)[];
  hours: number;
  /** The stacked series, bottom last; executions by state when absent. */
  keys?: ChartSeries[];
  /** The chart's accessible name. */
  label?: string;
  /** The y axis's label. */
  unit?: string;
  /** Seconds per bucket; an hour for a window of a day or less, a day above, when absent. */
  step?: number;
}

/** Counts per bucket over the last `hours`, stacked (executions by state unless `keys` says otherwise). */
export default function SeriesChart({ series, hours, keys = STATES, label = 'Executions per state over time', unit = 'executions', step }: Props) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const xs = series.map((p) => new Date(p.bucket).getTime() / 1000);
    const raw = keys.map((s) => series.map((p) => Number(p[s.key] ?? 0)));
    // Stacked: each series' bar is drawn as the sum of it and the series
    // after it, the tallest first, so every one shows as its own band.
    const stacked = raw.map((_, i) => xs.map((_, j) => raw.slice(i).reduce((sum, r) => sum + r[j], 0)));
    const data: uPlot.AlignedData = [xs, ...stacked];
    const bars = uPlot.paths.bars?.({ size: [0.6, 40] });
    const plot = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 220,
        series: [
          {},
          ...keys.map((s, i) => ({
            label: s.label ?? s.key,
            stroke: s.color,
            fill: `${s.color}cc`,
            width: 1,
            paths: bars,
            // The legend shows the series' own count, not the stacked sum.
            value: (_u: uPlot, _v: number | null, _si: number, idx: number | null) => (idx === null ? '' : String(raw[i][idx] ?? 0)),
          })),
        ],
        axes: [{}, { label: unit }],
        // The whole window, whatever buckets have data (one bucket alone would span years).
        scales: {
          // Counts: from 0, whatever the smallest bar (uPlot would start at it).
          y: { range: (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [0, Math.max(1, max)] },
          x: {
            time: true,
            range: (): uPlot.Range.MinMax => {
              const bucket = step && step > 0 ? step : hours > 24 ? 86_400 : 3_600;
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
  }, [series, hours, keys, unit, step]);
  return <div ref={host} className="chart" role="img" aria-label={label} />;
}
