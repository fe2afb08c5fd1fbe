//! The definition files given to `tessera apply -f`: a file, `-` for stdin,
//! or a directory (its `*.yaml`, `*.yml` and `*.json` files, in name order,
//! not recursing: a directory is one flat set of resources, and a nested
//! folder of drafts should not be applied by surprise).

use std::{io::Read, path::{Path, PathBuf}};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}: no *.yaml, *.yml or *.json files in this directory")]
    EmptyDirectory(String),
    #[error("{path}: not valid JSON: {message}")]
    InvalidPayload { path: String, message: String },
}

/// One file to apply: its name as the user will recognise it, its text and
/// the media type to send it as.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
    pub content_type: &'static str,
}

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads every `-f` argument, in the order given.
pub fn read_all(arguments: &[PathBuf]) -> Result<Vec<Source>, SourceError> {
    let mut sources = Vec::new();
    for argument in arguments {
        if argument.as_os_str() == "-" {
            sources.push(read_stdin()?);
        } else if argument.is_dir() {
            for path in definition_files(argument)? {
                sources.push(read_file(&path)?);
            }
        } else {
            sources.push(read_file(argument)?);
        }
    }
    Ok(sources)
}

/// The JSON payload of `tessera run`: `-d TEXT`, `-f FILE` (or `-f -` for
/// stdin), or none.
pub fn payload(data: Option<&str>, file: Option<&Path>) -> Result<Option<serde_json::Value>, SourceError> {
    let (name, text) = match (data, file) {
        (Some(text), _) => ("-d".to_string(), text.to_string()),
        (None, Some(path)) if path.as_os_str() == "-" => ("<stdin>".to_string(), read_stdin()?.text),
        (None, Some(path)) => {
            let source = read_file(path)?;
            (source.name, source.text)
        }
        (None, None) => return Ok(None),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| SourceError::InvalidPayload { path: name, message: e.to_string() })
}

fn read_stdin() -> Result<Source, SourceError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| SourceError::Read { path: "<stdin>".into(), source })?;
    // YAML is a superset of JSON, so stdin of either kind is read as YAML.
    Ok(Source { name: "<stdin>".into(), text, content_type: "application/yaml" })
}

fn read_file(path: &Path) -> Result<Source, SourceError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read { path: name.clone(), source })?;
    Ok(Source { name, text, content_type: content_type(path) })
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("json") => "application/json",
        _ => "application/yaml",
    }
}

fn definition_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let read_error = |source| SourceError::Read { path: dir.display().to_string(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let wanted = path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(SourceError::EmptyDirectory(dir.display().to_string()));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_from_the_command_line() {
        assert_eq!(payload(Some(r#"{"id": 1}"#), None).unwrap(), Some(serde_json::json!({"id": 1})));
        assert_eq!(payload(None, None).unwrap(), None);
        assert!(matches!(payload(Some("{nope"), None), Err(SourceError::InvalidPayload { .. })));
    }

    #[test]
    fn a_directory_gives_its_definition_files_in_name_order() {
        let dir = std::env::temp_dir().join(format!("tessera-source-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("drafts")).unwrap();
        for name in ["b.yml", "a.yaml", "c.json", "notes.txt", "drafts/d.yaml"] {
            std::fs::write(dir.join(name), "{}").unwrap();
        }
        let sources = read_all(std::slice::from_ref(&dir)).unwrap();
        let names: Vec<_> = sources.iter().map(|s| Path::new(&s.name).file_name().unwrap().to_str().unwrap().to_string()).collect();
        assert_eq!(names, ["a.yaml", "b.yml", "c.json"]);
        assert_eq!(sources[2].content_type, "application/json");
        assert_eq!(sources[0].content_type, "application/yaml");
        let _ = std::fs::remove_dir_all(dir);
    }
}
