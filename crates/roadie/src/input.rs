//! Reading a workflow file given on the command line: read, lint (every
//! problem printed with file:line:col), parse, and the `-p NAME=VALUE`
//! parameters. Shared by `roadie run` and `roadie submit`.

use roadie_spec::Workflow;

/// The exit code for bad input; the problems are already printed.
pub struct BadInput(pub u8);

/// A workflow file ready to run: linted clean, parsed, parameters split.
pub fn load_workflow(
    file: &str,
    parameters: &[String],
    verb: &str,
) -> Result<(Workflow, Vec<(String, String)>), BadInput> {
    let usage = BadInput(crate::EXIT_USAGE);
    let src = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("error: cannot read {file}: {e}");
        BadInput(crate::EXIT_USAGE)
    })?;
    let mut failed = false;
    for d in crate::lint_file(&src, file) {
        eprintln!("{d}");
        failed |= d.is_error();
    }
    if failed {
        eprintln!("error: {file} has problems; nothing was {verb}");
        return Err(usage);
    }
    let wf = roadie_spec::parse_workflow(&src, file).map_err(|e| {
        eprintln!("{e}");
        BadInput(crate::EXIT_USAGE)
    })?;
    let mut params = Vec::new();
    for p in parameters {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => params.push((k.to_string(), v.to_string())),
            _ => {
                eprintln!("error: -p expects NAME=VALUE, got '{p}'");
                return Err(usage);
            }
        }
    }
    Ok((wf, params))
}
