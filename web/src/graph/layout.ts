// Lays an integration's definition out as React Flow nodes and edges:
// triggers on top, steps in sequence downwards, `choice` branches side by
// side rejoining below, `foreach`/`parallel` as groups holding their nested
// steps, `on_error` handlers to the right behind dashed edges.
import type { Edge, Node } from '@xyflow/react';
import type { Definition, StepDef } from '../api';

export const STEP_KINDS = ['transform', 'log', 'fail', 'delay', 'choice', 'foreach', 'parallel', 'call', 'http', 'sql', 'publish'] as const;

export interface StepNodeData extends Record<string, unknown> {
  label: string;
  kind: string;
  path: string;
  detail?: string;
  call?: string;
  group?: 'foreach' | 'parallel' | 'branch';
}

const NW = 210;
const NH = 58;
const GAP = 40;
const PAD = 16;
const HEAD = 34;
const JH = 18;

interface Block {
  nodes: Node[];
  edges: Edge[];
  w: number;
  h: number;
  entry: string | null;
  exits: string[];
}

function shift(b: Block, dx: number, dy: number, parentId?: string): void {
  for (const n of b.nodes) {
    if (n.parentId && !n.data.__free) continue;
    n.position = { x: n.position.x + dx, y: n.position.y + dy };
    if (parentId) {
      n.parentId = parentId;
      delete (n.data as Record<string, unknown>).__free;
    }
  }
}

function stepKind(step: StepDef): string {
  for (const k of STEP_KINDS) if (k in step) return k;
  return Object.keys(step).find((k) => k !== 'name' && k !== 'on_error' && k !== 'retry' && k !== 'timeout') ?? 'step';
}

function short(s: unknown, n = 38): string {
  const t = typeof s === 'string' ? s : JSON.stringify(s);
  if (!t) return '';
  const one = t.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

function detailOf(kind: string, body: Record<string, unknown> | undefined): string | undefined {
  if (!body || typeof body !== 'object') return undefined;
  switch (kind) {
    case 'http':
      return `${String(body.method ?? 'GET')} ${short(body.url, 30)}`;
    case 'sql':
      return short(body.statement, 34);
    case 'publish':
      return short(body.routing_key ?? body.exchange, 34);
    case 'log':
      return short(body.message, 34);
    case 'transform':
      return short(body.expression, 34);
    case 'delay':
      return short(body.duration ?? body.for ?? body, 34);
    case 'fail':
      return short(body.message ?? body.code, 34);
    default:
      return undefined;
  }
}

let edgeSeq = 0;
function edge(source: string, target: string, extra: Partial<Edge> = {}): Edge {
  return { id: `e${edgeSeq++}:${source}->${target}`, source, target, type: 'smoothstep', ...extra };
}

const free = (data: StepNodeData) => ({ ...data, __free: true });

function sequence(steps: StepDef[] | undefined, prefix: string): Block {
  const blocks = (steps ?? []).map((s) => stepBlock(s, prefix));
  const out: Block = { nodes: [], edges: [], w: 0, h: 0, entry: null, exits: [] };
  if (blocks.length === 0) return out;
  const w = Math.max(...blocks.map((b) => b.w));
  let y = 0;
  let prevExits: string[] = [];
  for (const b of blocks) {
    shift(b, (w - b.w) / 2, y);
    out.nodes.push(...b.nodes);
    out.edges.push(...b.edges);
    if (b.entry) for (const p of prevExits) out.edges.push(edge(p, b.entry));
    if (out.entry === null) out.entry = b.entry;
    prevExits = b.exits;
    y += b.h + GAP;
  }
  out.exits = prevExits;
  out.w = w;
  out.h = y - GAP;
  return out;
}

function leaf(id: string, data: StepNodeData, x = 0, y = 0): Node {
  return { id, type: 'step', position: { x, y }, data: free(data), width: NW, height: NH };
}

function stepBlock(step: StepDef, prefix: string): Block {
  const path = `${prefix}${step.name}`;
  const kind = stepKind(step);
  const body = step[kind] as Record<string, unknown> | undefined;
  let core: Block;
  if (kind === 'choice' && body) {
    const branches = ((body.branches as { when: string; steps: StepDef[] }[]) ?? []).map((b, i) => ({
      label: `when ${short(b.when, 28)}`,
      block: sequence(b.steps, `${path}/branches[${i}]/`),
    }));
    const otherwise = (body.otherwise as StepDef[] | undefined) ?? [];
    if (otherwise.length) branches.push({ label: 'otherwise', block: sequence(otherwise, `${path}/otherwise/`) });
    const inner = branches.reduce((s, b) => s + b.block.w, 0) + GAP * Math.max(0, branches.length - 1);
    const w = Math.max(NW, inner);
    const head = leaf(path, { label: step.name, kind, path, detail: `${branches.length} branch(es)` }, (w - NW) / 2, 0);
    const nodes: Node[] = [head];
    const edges: Edge[] = [];
    const joinId = `${path}#join`;
    let x = (w - inner) / 2;
    const by = NH + GAP;
    let maxH = 0;
    for (const b of branches) {
      shift(b.block, x, by);
      nodes.push(...b.block.nodes);
      edges.push(...b.block.edges);
      if (b.block.entry) edges.push(edge(path, b.block.entry, { label: b.label }));
      for (const ex of b.block.exits) edges.push(edge(ex, joinId));
      x += b.block.w + GAP;
      maxH = Math.max(maxH, b.block.h);
    }
    const jy = by + maxH + GAP;
    nodes.push({ id: joinId, type: 'join', position: { x: w / 2 - 40, y: jy }, data: free({ label: 'end of choice', kind: 'join', path: joinId }), width: 80, height: JH });
    if (!otherwise.length) edges.push(edge(path, joinId, { label: 'no match' }));
    core = { nodes, edges, w, h: jy + JH, entry: path, exits: [joinId] };
  } else if (kind === 'foreach' && body) {
    const inner = sequence(body.steps as StepDef[], `${path}/items[*]/`);
    const w = Math.max(NW, inner.w + 2 * PAD);
    const h = HEAD + inner.h + PAD;
    const group: Node = {
      id: path,
      type: 'group-step',
      position: { x: 0, y: 0 },
      data: free({ label: step.name, kind, path, group: 'foreach', detail: `each of ${short(body.items, 26)}` }),
      width: w,
      height: h,
      style: { width: w, height: h },
    };
    shift(inner, (w - inner.w) / 2, HEAD, path);
    core = { nodes: [group, ...inner.nodes], edges: inner.edges, w, h, entry: path, exits: [path] };
  } else if (kind === 'parallel' && body) {
    const branches = ((body.branches as { name: string; steps: StepDef[] }[]) ?? []).map((b) => {
      const id = `${path}/${b.name}`;
      const inner = sequence(b.steps, `${id}/`);
      const bw = Math.max(NW, inner.w + 2 * PAD);
      const bh = HEAD + inner.h + PAD;
      const node: Node = {
        id,
        type: 'group-step',
        position: { x: 0, y: 0 },
        data: { label: b.name, kind: 'branch', path: id, group: 'branch' } satisfies StepNodeData,
        width: bw,
        height: bh,
        style: { width: bw, height: bh },
      };
      shift(inner, (bw - inner.w) / 2, HEAD, id);
      return { node, inner, bw, bh };
    });
    const innerW = branches.reduce((s, b) => s + b.bw, 0) + GAP * Math.max(0, branches.length - 1);
    const w = Math.max(NW, innerW + 2 * PAD);
    const h = HEAD + Math.max(0, ...branches.map((b) => b.bh)) + PAD;
    const group: Node = {
      id: path,
      type: 'group-step',
      position: { x: 0, y: 0 },
      data: free({ label: step.name, kind, path, group: 'parallel', detail: `${branches.length} branches at once` }),
      width: w,
      height: h,
      style: { width: w, height: h },
    };
    const nodes: Node[] = [group];
    const edges: Edge[] = [];
    let x = (w - innerW) / 2;
    for (const b of branches) {
      b.node.parentId = path;
      b.node.position = { x, y: HEAD };
      nodes.push(b.node, ...b.inner.nodes);
      edges.push(...b.inner.edges);
      x += b.bw + GAP;
    }
    core = { nodes, edges, w, h, entry: path, exits: [path] };
  } else {
    const data: StepNodeData = { label: step.name, kind, path, detail: detailOf(kind, body) };
    if (kind === 'call' && body) data.call = String(body.integration ?? '');
    core = { nodes: [leaf(path, data)], edges: [], w: NW, h: NH, entry: path, exits: [path] };
  }
  if (step.on_error && step.on_error.length) {
    const handlers = sequence(step.on_error, `${path}/on_error/`);
    shift(handlers, core.w + GAP, 0);
    core.nodes.push(...handlers.nodes);
    core.edges.push(...handlers.edges);
    if (handlers.entry) core.edges.push(edge(path, handlers.entry, { label: 'on error', className: 'edge-error', sourceHandle: 'right', targetHandle: 'left', style: { strokeDasharray: '6 4' } }));
    core.w += GAP + handlers.w;
    core.h = Math.max(core.h, handlers.h);
  }
  return core;
}

export function layoutDefinition(def: Definition): { nodes: Node[]; edges: Edge[]; w: number; h: number } {
  edgeSeq = 0;
  const triggers = def.spec?.triggers ?? [];
  const main = sequence(def.spec?.steps, '');
  const nodes: Node[] = [];
  const edges: Edge[] = [];
  const tw = triggers.length * NW + Math.max(0, triggers.length - 1) * GAP;
  const w = Math.max(tw, main.w);
  let x = (w - tw) / 2;
  triggers.forEach((t, i) => {
    const kind = Object.keys(t)[0] ?? 'trigger';
    const v = t[kind] as Record<string, unknown> | undefined;
    const detail = kind === 'schedule' ? short(v?.cron ?? v?.every ?? v) : kind === 'queue' ? short(v?.queue) : kind === 'webhook' ? `auth: ${String(v?.auth ?? 'none')}` : undefined;
    nodes.push({ id: `trigger-${i}`, type: 'trigger', position: { x, y: 0 }, data: { label: kind, kind, path: `trigger-${i}`, detail }, width: NW, height: NH });
    if (main.entry) edges.push(edge(`trigger-${i}`, main.entry));
    x += NW + GAP;
  });
  const top = triggers.length ? NH + GAP : 0;
  shift(main, (w - main.w) / 2, top);
  nodes.push(...main.nodes);
  edges.push(...main.edges);
  let totalW = w;
  let totalH = top + main.h;
  const onError = def.spec?.on_error ?? [];
  if (onError.length) {
    const handlers = sequence(onError, 'on_error/');
    const fx = w + GAP * 2;
    nodes.push({ id: '#failure', type: 'join', position: { x: fx + (handlers.w - 120) / 2, y: top }, data: { label: 'if the execution fails', kind: 'join', path: '#failure' }, width: 120, height: JH });
    shift(handlers, fx, top + JH + GAP);
    nodes.push(...handlers.nodes);
    edges.push(...handlers.edges);
    if (handlers.entry) edges.push(edge('#failure', handlers.entry, { label: 'on error', className: 'edge-error', style: { strokeDasharray: '6 4' } }));
    totalW = fx + handlers.w;
    totalH = Math.max(totalH, top + JH + GAP + handlers.h);
  }
  for (const n of nodes) delete (n.data as Record<string, unknown>).__free;
  return { nodes, edges, w: totalW, h: totalH };
}

/** The state of a graph node from an execution's checkpoints (`items[*]` matches every item). */
export function stateOf(path: string, states: Map<string, string>, steps: { path: string; state: string }[]): string {
  if (!path.includes('items[*]')) return states.get(path) ?? 'not_run';
  const re = new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/items\\\[\\\*\\\]/g, 'items\\[\\d+\\]')}$`);
  const found = steps.filter((s) => re.test(s.path)).map((s) => s.state);
  if (found.length === 0) return 'not_run';
  if (found.includes('failed')) return 'failed';
  if (found.some((s) => s === 'running' || s === 'queued')) return 'running';
  if (found.every((s) => s === 'succeeded')) return 'succeeded';
  return found[0]!;
}

export function matchingSteps<T extends { path: string }>(path: string, steps: T[]): T[] {
  if (!path.includes('items[*]')) return steps.filter((s) => s.path === path);
  const re = new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/items\\\[\\\*\\\]/g, 'items\\[\\d+\\]')}$`);
  return steps.filter((s) => re.test(s.path));
}
