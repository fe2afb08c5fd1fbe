// Stand-in for codemirror-json-schema's markdown renderer: escaped text with
// `code` spans, no highlighter (see vite.config.ts).
function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
export function renderMarkdown(markdown: string, inline = true): string {
  const html = escape(markdown ?? '').replace(/`([^`]+)`/g, '<code>$1</code>');
  return inline ? html : `<p>${html.replace(/\n\n+/g, '</p><p>')}</p>`;
}
