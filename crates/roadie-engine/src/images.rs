//! What a container without `command` runs: the image's ENTRYPOINT and CMD.
//!
//! Kubernetes runs `command` in place of the image's ENTRYPOINT and `args` in
//! place of its CMD; with no `command` it runs ENTRYPOINT + (`args`, or CMD
//! when `args` is empty too). roadie runs steps on the host and never pulls
//! images, so it cannot read an image's ENTRYPOINT; this table gives it for the
//! well-known images Argo's examples run without a `command`, with the program
//! the host provides in its place. Images not listed are taken to have no
//! ENTRYPOINT (true of the usual base images: alpine, busybox, debian, ubuntu,
//! python, node): `args` alone are then the command, and a container with
//! neither `command` nor `args` is an error naming the image.

/// ENTRYPOINT and CMD of a well-known image, as host commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// (repository, tag or `*`, ENTRYPOINT, CMD). The repository is matched
/// without a registry host and without `library/`; the first row whose tag
/// matches wins.
const TABLE: &[(&str, &str, &[&str], &[&str])] = &[
    // Argo's test image: test/e2e/images/argosay/v2/Dockerfile has
    // `ENTRYPOINT ["/argosay"]`; roadie's tests provide `argosay` on PATH.
    ("argoproj/argosay", "v1", &[], &["cowsay"]),
    ("argoproj/argosay", "*", &["argosay"], &[]),
    // docker/whalesay: `CMD ["/bin/bash"]`; examples always call `cowsay`, so
    // args-only containers (`args: [cowsay, hi]`) work, and no args runs cowsay.
    ("docker/whalesay", "*", &[], &["cowsay"]),
    // The official images' Dockerfiles (their entrypoint scripts only set
    // things up in the container, then exec the CMD).
    ("nginx", "*", &[], &["nginx", "-g", "daemon off;"]),
    ("influxdb", "*", &[], &["influxd"]),
    ("redis", "*", &[], &["redis-server"]),
    ("postgres", "*", &[], &["postgres"]),
    ("python", "*", &[], &["python3"]),
    ("node", "*", &[], &["node"]),
];

/// Splits `registry.example:5000/library/nginx:1.13@sha256:...` into
/// (`nginx`, `1.13`).
fn repository_and_tag(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    let (path, tag) = match image.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (image, "latest"),
    };
    // A first component with a dot or a colon, or `localhost`, is a registry host.
    let path = match path.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest
        }
        _ => path,
    };
    let path = path.strip_prefix("library/").unwrap_or(path);
    (path, tag)
}

/// ENTRYPOINT and CMD of `image` when roadie knows them.
pub fn image_defaults(image: &str) -> Option<ImageDefaults> {
    let (repo, tag) = repository_and_tag(image);
    TABLE
        .iter()
        .find(|(r, t, _, _)| *r == repo && (*t == "*" || *t == tag))
        .map(|(_, _, e, c)| ImageDefaults {
            entrypoint: e.iter().map(|s| s.to_string()).collect(),
            cmd: c.iter().map(|s| s.to_string()).collect(),
        })
}

/// The argv of a container as Kubernetes would run it, or `None` when it
/// cannot be known (no command, no args, image not in the table).
pub fn container_argv(
    image: Option<&str>,
    command: &[String],
    args: &[String],
) -> Option<Vec<String>> {
    if !command.is_empty() {
        return Some(command.iter().chain(args).cloned().collect());
    }
    match image.and_then(image_defaults) {
        Some(d) => {
            let tail = if args.is_empty() { &d.cmd } else { args };
            let argv: Vec<String> = d.entrypoint.iter().chain(tail).cloned().collect();
            (!argv.is_empty()).then_some(argv)
        }
        None => (!args.is_empty()).then(|| args.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn image_names_are_split_as_docker_does() {
        assert_eq!(repository_and_tag("nginx:1.13"), ("nginx", "1.13"));
        assert_eq!(repository_and_tag("nginx"), ("nginx", "latest"));
        assert_eq!(
            repository_and_tag("docker.io/library/nginx:1.13"),
            ("nginx", "1.13")
        );
        assert_eq!(
            repository_and_tag("localhost:5000/argoproj/argosay:v2@sha256:ab"),
            ("argoproj/argosay", "v2")
        );
    }

    #[test]
    fn entrypoint_takes_args_and_cmd_is_replaced_by_them() {
        // argosay:v2 has an ENTRYPOINT: args are its arguments.
        assert_eq!(
            container_argv(
                Some("argoproj/argosay:v2"),
                &[],
                &v(&["echo", "hi", "/out"])
            ),
            Some(v(&["argosay", "echo", "hi", "/out"]))
        );
        assert_eq!(
            container_argv(Some("argoproj/argosay:v2"), &[], &[]),
            Some(v(&["argosay"]))
        );
        // nginx has only a CMD: no args runs it, args replace it.
        assert_eq!(
            container_argv(Some("nginx:1.13"), &[], &[]),
            Some(v(&["nginx", "-g", "daemon off;"]))
        );
        assert_eq!(
            container_argv(Some("nginx:1.13"), &[], &v(&["nginx", "-t"])),
            Some(v(&["nginx", "-t"]))
        );
        // A command replaces the ENTRYPOINT whatever the image.
        assert_eq!(
            container_argv(
                Some("argoproj/argosay:v2"),
                &v(&["/argosay"]),
                &v(&["echo"])
            ),
            Some(v(&["/argosay", "echo"]))
        );
        // Unknown images: args are the command; nothing at all is unknown.
        assert_eq!(
            container_argv(Some("alpine:3.23"), &[], &v(&["echo", "hi"])),
            Some(v(&["echo", "hi"]))
        );
        assert_eq!(container_argv(Some("alpine:3.23"), &[], &[]), None);
        assert_eq!(container_argv(None, &[], &[]), None);
    }
}
