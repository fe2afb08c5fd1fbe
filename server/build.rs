//! Builds the admin panel (`web/`, React + TypeScript with Vite) into
//! `$OUT_DIR/panel`, which `routes::panel` embeds in the binary: a node
//! serves its panel with nothing fetched at run time.
//!
//! - `TESSERA_WEB_DIST=/path/to/dist`: embed a panel built elsewhere (an
//!   air-gapped site's build machine, a release pipeline); npm is not run.
//! - Otherwise `npm ci` (only when `web/node_modules` is missing or older
//!   than `web/package-lock.json`) and
//!   `npm run build` run in `web/` whenever its sources change.
//! - Without npm on the machine the binary still builds, with a page that
//!   says how to build the panel, and cargo prints a warning.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("panel");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    println!("cargo:rerun-if-env-changed=TESSERA_WEB_DIST");
    if let Some(dist) = env::var_os("TESSERA_WEB_DIST") {
        let dist = PathBuf::from(dist);
        println!("cargo:rerun-if-changed={}", dist.display());
        replace_dir(&out);
        copy_dir(&dist, &out).unwrap_or_else(|e| panic!("TESSERA_WEB_DIST={}: {e}", dist.display()));
        return;
    }
    // Only paths that exist: cargo would run this again on every build for one that does not.
    let inputs = ["src", "public", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json"];
    for input in inputs.iter().map(|input| web.join(input)).filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    if !web.join("package.json").is_file() {
        return placeholder(&out, "there is no web/ directory in this source tree");
    }
    if stale_modules(&web) && !npm(&web, &["ci", "--no-audit", "--no-fund"], &out) {
        return;
    }
    npm(&web, &["run", "build"], &out);
}

/// `node_modules` is missing, or older than the lock file (npm writes its
/// own copy of the lock into it on every install).
fn stale_modules(web: &Path) -> bool {
    let modified = |path: PathBuf| fs::metadata(path).and_then(|m| m.modified()).ok();
    match (modified(web.join("package-lock.json")), modified(web.join("node_modules/.package-lock.json"))) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    }
}

/// Run npm in `web`; false (with the placeholder written) when npm is not installed.
fn npm(web: &Path, args: &[&str], out: &Path) -> bool {
    let status = Command::new("npm").args(args).current_dir(web).env("TESSERA_PANEL_OUT", out).status();
    match status {
        Ok(status) if status.success() => true,
        Ok(status) => panic!("`npm {}` in web/ failed ({status}); see its output above", args.join(" ")),
        Err(e) => {
            placeholder(out, &format!("npm could not be run ({e}); install Node.js 20 or newer with npm"));
            false
        }
    }
}

fn placeholder(out: &Path, why: &str) {
    println!("cargo:warning=the admin panel is not built into this binary: {why}");
    replace_dir(out);
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tessera</title></head>\
         <body><h1>Tessera</h1><p>The admin panel was not built into this binary: {why}. Build it with \
         <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> (or set <code>TESSERA_WEB_DIST</code> to a \
         built panel) and build the binary again. The API is at <code>/api</code>.</p></body></html>"
    );
    fs::write(out.join("index.html"), page).expect("write the placeholder panel");
}

fn replace_dir(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("create the panel's output directory");
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
