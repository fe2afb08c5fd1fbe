import { useEffect, useRef } from 'react';
import { EditorState, StateEffect, StateField } from '@codemirror/state';
import { EditorView, drawSelection, highlightActiveLine, highlightActiveLineGutter, keymap, lineNumbers } from '@codemirror/view';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting } from '@codemirror/language';
import { autocompletion, completionKeymap } from '@codemirror/autocomplete';
import { forceLinting, linter, lintGutter, lintKeymap, type Diagnostic } from '@codemirror/lint';
import { yamlSchema } from 'codemirror-json-schema/yaml';
import { updateSchema } from 'codemirror-json-schema';
import type { DefinitionError } from '../api';

const setServerErrors = StateEffect.define<Diagnostic[]>();
const serverErrors = StateField.define<Diagnostic[]>({
  create: () => [],
  update(value, tr) {
    for (const e of tr.effects) if (e.is(setServerErrors)) return e.value;
    if (tr.docChanged && value.length) {
      return value.map((d) => ({ ...d, from: tr.changes.mapPos(d.from), to: tr.changes.mapPos(d.to, 1) }));
    }
    return value;
  },
});

export function toDiagnostics(state: EditorState, errors: DefinitionError[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const e of errors) {
    if (!e.line) continue;
    const lineNo = Math.min(Math.max(1, e.line), state.doc.lines);
    const line = state.doc.line(lineNo);
    const from = Math.min(line.from + Math.max(0, (e.column ?? 1) - 1), line.to);
    const to = from < line.to ? line.to : from;
    out.push({ from, to, severity: 'error', source: 'server', message: e.path ? `${e.path}: ${e.message}` : e.message });
  }
  return out;
}

type Schema = Record<string, unknown>;

/**
 * The server's schema picks the spec by `kind` through if/then (and accepts a
 * list at the root), which the completion engine does not follow: give it the
 * resource schema with the spec of this document's kind in place.
 */
export function schemaForKind(schema: unknown, kind: 'Integration' | 'Connection'): Schema | null {
  if (!schema || typeof schema !== 'object') return null;
  const root = schema as Schema;
  const defs = root.$defs as Record<string, Schema> | undefined;
  const resource = defs?.Resource;
  if (!defs || !resource) return root;
  const { allOf: _ignored, ...rest } = resource;
  void _ignored;
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $defs: defs,
    definitions: defs,
    ...rest,
    properties: { ...(resource.properties as Schema), spec: { $ref: `#/$defs/${kind === 'Connection' ? 'ConnectionSpec' : 'IntegrationSpec'}` } },
  };
}

function kindOf(text: string): 'Integration' | 'Connection' {
  return /^kind:\s*['"]?Connection\b/m.test(text) ? 'Connection' : 'Integration';
}

interface Props {
  initial: string;
  schema: unknown;
  errors: DefinitionError[];
  onChange(text: string): void;
  label: string;
}

export function YamlEditor({ initial, schema, errors, onChange, label }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const changeRef = useRef(onChange);
  const kindRef = useRef(kindOf(initial));
  changeRef.current = onChange;

  useEffect(() => {
    if (!host.current) return;
    const v = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: initial,
        extensions: [
          lineNumbers(),
          highlightActiveLineGutter(),
          history(),
          drawSelection(),
          indentOnInput(),
          bracketMatching(),
          highlightActiveLine(),
          syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
          autocompletion(),
          lintGutter(),
          ...(schema ? [yamlSchema(schemaForKind(schema, kindOf(initial)) as Parameters<typeof yamlSchema>[0])] : []),
          serverErrors,
          linter((ev) => ev.state.field(serverErrors), {
            delay: 0,
            needsRefresh: (u) => u.transactions.some((t) => t.effects.some((e) => e.is(setServerErrors))),
          }),
          keymap.of([...defaultKeymap, ...historyKeymap, ...completionKeymap, ...lintKeymap]),
          EditorView.contentAttributes.of({ 'aria-label': label }),
          EditorView.updateListener.of((u) => {
            if (!u.docChanged) return;
            const text = u.state.doc.toString();
            changeRef.current(text);
            const kind = kindOf(text);
            if (schema && kind !== kindRef.current) {
              kindRef.current = kind;
              const next = schemaForKind(schema, kind);
              if (next) queueMicrotask(() => updateSchema(u.view, next as Parameters<typeof updateSchema>[1]));
            }
          }),
        ],
      }),
    });
    view.current = v;
    return () => {
      v.destroy();
      view.current = null;
    };
    // The editor is created once per document (the page keys it).
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    v.dispatch({ effects: setServerErrors.of(toDiagnostics(v.state, errors)) });
    forceLinting(v);
  }, [errors]);

  return <div className="cm-host" ref={host} data-testid="yaml-editor" />;
}
