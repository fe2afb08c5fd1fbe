import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';

const target = process.env.TESSERA_DEV_API ?? 'http://127.0.0.1:8090';
const outDir = process.env.TESSERA_PANEL_OUT || 'dist';

// codemirror-json-schema renders descriptions with markdown-it + shiki (a
// WebAssembly highlighter: large, and refused by the panel's CSP). Swap its
// markdown helper for a small escaping one.
function plainMarkdown(): Plugin {
  const shim = fileURLToPath(new URL('./src/editor/markdown-shim.ts', import.meta.url));
  return {
    name: 'tessera-plain-markdown',
    enforce: 'pre',
    resolveId(source, importer) {
      if (importer && importer.includes('codemirror-json-schema') && /utils\/markdown(\.js)?$/.test(source)) return shim;
      return null;
    },
  };
}

// The policy the server sends with the panel: `vite preview` sends it too, so
// a local run shows anything it would break.
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
function previewCsp(): Plugin {
  return {
    name: 'tessera-preview-csp',
    configurePreviewServer(server) {
      server.middlewares.use((_req, res, next) => {
        res.setHeader('Content-Security-Policy', CSP);
        next();
      });
    },
  };
}

export default defineConfig({
  base: '/',
  plugins: [plainMarkdown(), previewCsp(), react()],
  build: {
    outDir,
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    port: 5173,
    host: '127.0.0.1',
    allowedHosts: true,
    proxy: {
      '/api': { target, changeOrigin: false },
      '/hooks': { target, changeOrigin: false },
    },
  },
  preview: {
    host: '127.0.0.1',
    allowedHosts: true,
    proxy: {
      '/api': { target, changeOrigin: false },
      '/hooks': { target, changeOrigin: false },
    },
  },
});
