import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const SERIES: { key: string; color: string }[] = [
  { key: 'succeeded', color: '#1a7f37' },
  { key: 'failed', color: '#cf222e' },
  { key: 'cancelled', color: '#8c959f' },
];

export default function SeriesChart({ series }: { series: ({ bucket: string } & Record<string, number | string>)[] }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const xs = series.map((p) => new Date(p.bucket).getTime() / 1000);
    const data: uPlot.AlignedData = [xs, ...SERIES.map((s) => series.map((p) => Number(p[s.key] ?? 0)))];
    const bars = uPlot.paths.bars?.({ size: [0.6, 40] });
    const plot = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 220,
        series: [{}, ...SERIES.map((s) => ({ label: s.key, stroke: s.color, fill: `${s.color}55`, width: 1, paths: bars }))],
        axes: [{}, { label: 'executions' }],
        scales: { x: { time: true } },
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
  }, [series]);
  return <div ref={host} className="chart" role="img" aria-label="Executions per state over time" />;
}
