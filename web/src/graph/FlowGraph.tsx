import { memo, useEffect, useMemo } from 'react';
import { Background, Controls, Handle, Position, ReactFlow, useReactFlow, useStore, type Node, type NodeProps } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { Link } from 'react-router';
import type { Definition, StepCheckpoint } from '../api';
import { layoutDefinition, stateOf, type StepNodeData } from './layout';

interface Ctx {
  onSelect?: (path: string) => void;
  selected?: string | null;
  withState: boolean;
}

type StepNode = Node<StepNodeData & { state?: string; ctx: Ctx }>;

function StepBody({ data, testid }: { data: StepNode['data']; testid: boolean }) {
  const state = data.state ?? 'not_run';
  const label = (
    <>
      <span className="node-title">{data.label}</span>
      <span className="node-kind">{data.kind}</span>
      {data.detail ? <span className="node-detail">{data.detail}</span> : null}
    </>
  );
  const attrs = testid ? { 'data-testid': `step-${data.path}`, 'data-state': data.ctx.withState ? state : undefined } : {};
  return (
    <div {...attrs} className={`node-body${data.ctx.selected === data.path ? ' selected' : ''}`}>
      {data.ctx.onSelect ? (
        <button type="button" className="node-button nodrag" onClick={() => data.ctx.onSelect!(data.path)} aria-label={`Step ${data.path}${data.ctx.withState ? `, ${state.replace('_', ' ')}` : ''}`}>
          {label}
        </button>
      ) : (
        <div className="node-static">{label}</div>
      )}
      {data.call ? (
        <Link className="node-call nodrag" to={`/integrations/${encodeURIComponent(data.call)}`}>
          calls {data.call}
        </Link>
      ) : null}
    </div>
  );
}

const StepNodeView = memo(function StepNodeView({ data }: NodeProps<StepNode>) {
  return (
    <div className={`flow-node kind-${data.kind} ${data.ctx.withState ? `st-${data.state ?? 'not_run'}` : ''}`}>
      <Handle type="target" position={Position.Top} />
      <Handle type="target" id="left" position={Position.Left} />
      <StepBody data={data} testid />
      <Handle type="source" position={Position.Bottom} />
      <Handle type="source" id="right" position={Position.Right} />
    </div>
  );
});

const GroupNodeView = memo(function GroupNodeView({ data }: NodeProps<StepNode>) {
  const isBranch = data.group === 'branch';
  return (
    <div className={`flow-group group-${data.group} ${data.ctx.withState && !isBranch ? `st-${data.state ?? 'not_run'}` : ''}`}>
      <Handle type="target" position={Position.Top} />
      <Handle type="target" id="left" position={Position.Left} />
      {isBranch ? (
        <div className="group-head">branch {data.label}</div>
      ) : (
        <div className="group-head">
          <StepBody data={data} testid />
        </div>
      )}
      <Handle type="source" position={Position.Bottom} />
      <Handle type="source" id="right" position={Position.Right} />
    </div>
  );
});

function TriggerNodeView({ data }: NodeProps<StepNode>) {
  return (
    <div className="flow-node trigger" data-testid={`trigger-${data.kind}`}>
      <span className="node-title">{data.label}</span>
      <span className="node-kind">trigger</span>
      {data.detail ? <span className="node-detail">{data.detail}</span> : null}
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
}

function JoinNodeView({ data }: NodeProps<StepNode>) {
  return (
    <div className="flow-join" title={data.label}>
      <Handle type="target" position={Position.Top} />
      <span className="sr-only">{data.label}</span>
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
}

/** Fits the graph again when its container changes width (a side panel opens). */
function FitOnResize() {
  const width = useStore((s) => s.width);
  const { fitView } = useReactFlow();
  useEffect(() => {
    if (width > 0) void fitView({ padding: 0.08, maxZoom: 1 });
  }, [width, fitView]);
  return null;
}

// A click handler keeps pointer events on nodes that are neither draggable nor selectable.
const noop = () => {};

const nodeTypes = { step: StepNodeView, 'group-step': GroupNodeView, trigger: TriggerNodeView, join: JoinNodeView };

export interface FlowGraphProps {
  definition: Definition;
  steps?: StepCheckpoint[];
  onSelect?: (path: string) => void;
  selected?: string | null;
}

export default function FlowGraph({ definition, steps, onSelect, selected }: FlowGraphProps) {
  const layout = useMemo(() => layoutDefinition(definition), [definition]);
  const nodes = useMemo(() => {
    const states = new Map((steps ?? []).map((s) => [s.path, s.state]));
    const ctx: Ctx = { onSelect, selected, withState: steps !== undefined };
    return layout.nodes.map((n) => ({
      ...n,
      draggable: false,
      selectable: false,
      data: { ...(n.data as StepNodeData), ctx, state: steps ? stateOf((n.data as StepNodeData).path, states, steps) : undefined },
    })) as StepNode[];
  }, [layout, steps, onSelect, selected]);
  const height = Math.min(Math.max(layout.h + 80, 260), 720);
  return (
    <div className="flow" style={{ height }} role="figure" aria-label={`Flow of ${definition.metadata?.name ?? 'the integration'}`}>
      <ReactFlow
        nodes={nodes}
        edges={layout.edges}
        nodeTypes={nodeTypes}
        onNodeClick={noop}
        fitView
        fitViewOptions={{ padding: 0.08, maxZoom: 1 }}
        minZoom={0.2}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={false}
        panOnScroll={false}
        zoomOnScroll={false}
        preventScrolling={false}
        proOptions={{ hideAttribution: true }}
      >
        <Background gap={16} />
        <Controls showInteractive={false} />
        <FitOnResize />
      </ReactFlow>
    </div>
  );
}
