//! Where each value of a YAML or JSON document sits in its source text.
//!
//! serde gives roadie typed values but forgets where they came from; the
//! linter needs `file:line:col` for every problem it reports. So the same
//! text is read a second time, as parser events, and every node is
//! recorded under a dotted path such as `spec.templates[2].steps[0][1].template`
//! (mapping keys as written in the YAML, sequence items as `[i]`).
//!
//! A file may hold several documents (`---`); each gets its own [`SourceMap`],
//! with positions relative to the whole file.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, ScanError, Span, StrInput};

use crate::{ParseError, Position};

/// A place in one document's text: the character index into the document's
/// chunk of the file, and the 1-based line (in the whole file) and 1-based
/// column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    index: usize,
    line: u64,
    column: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Option<Mark>,
    start: Mark,
    end: Mark,
}

/// Source positions of every node of one YAML document, by path.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: String,
    /// The document's text (a chunk of the file), as characters, so that
    /// saphyr's character indices can be used directly.
    text: Vec<char>,
    /// Position of the document's first line in the file.
    start: Mark,
    entries: HashMap<String, Entry>,
    /// Paths in document order, for callers that want to walk them.
    order: Vec<String>,
}

/// One document's slice of a file: its text and the number of lines before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk<'a> {
    pub text: &'a str,
    pub line_offset: u64,
}

/// Splits a file into its documents at `---` lines, so that each can be read
/// (and fail) on its own. Comment-only or directive-only pieces before the first
/// `---` stay with the document that follows; pieces with no content are dropped.
pub(crate) fn split_documents(src: &str) -> Vec<Chunk<'_>> {
    let mut starts: Vec<(usize, u64)> = vec![(0, 0)];
    let mut offset = 0usize;
    for (lineno, line) in src.split_inclusive('\n').enumerate() {
        if lineno > 0 && is_document_start(line) {
            starts.push((offset, lineno as u64));
        }
        offset += line.len();
    }
    let mut chunks = Vec::new();
    let mut pending_start: Option<(usize, u64)> = None;
    for (i, &(begin, line)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map(|s| s.0).unwrap_or(src.len());
        let (begin, line) = pending_start.take().unwrap_or((begin, line));
        let text = &src[begin..end];
        if has_content(text) {
            chunks.push(Chunk {
                text,
                line_offset: line,
            });
        } else if i == 0 && text.lines().any(|l| l.starts_with('%')) {
            // Directives belong to the next document.
            pending_start = Some((begin, line));
        }
    }
    if chunks.is_empty() && !src.trim().is_empty() {
        chunks.push(Chunk {
            text: src,
            line_offset: 0,
        });
    }
    chunks
}

fn is_document_start(line: &str) -> bool {
    let rest = match line.strip_prefix("---") {
        Some(r) => r,
        None => return false,
    };
    rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])
}

/// True when the text holds something other than blank lines, comments,
/// directives and document markers.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        let t = t.strip_prefix("---").map(str::trim).unwrap_or(t);
        !(t.is_empty() || t.starts_with('#') || l.starts_with('%') || t == "...")
    })
}

impl SourceMap {
    /// Reads every document of `src`, one map each. Fails with the position of
    /// the first YAML syntax error.
    pub fn parse(src: &str, file: &str) -> Result<Vec<SourceMap>, ParseError> {
        split_documents(src)
            .into_iter()
            .filter_map(|chunk| SourceMap::parse_chunk(chunk, file).transpose())
            .collect()
    }

    /// Reads one document; `Ok(None)` when the chunk holds no document.
    pub(crate) fn parse_chunk(
        chunk: Chunk<'_>,
        file: &str,
    ) -> Result<Option<SourceMap>, ParseError> {
        let mut builder = Builder {
            events: Parser::new_from_str(chunk.text),
            line_offset: chunk.line_offset,
            entries: HashMap::new(),
            order: Vec::new(),
        };
        let fail = |err: ScanError| {
            let m = err.marker();
            ParseError {
                position: Position {
                    file: file.to_string(),
                    line: m.line() as u64 + chunk.line_offset,
                    column: m.col() as u64 + 1,
                },
                message: err.info(),
            }
        };
        let Some((first, span)) = builder.next_node().map_err(fail)? else {
            return Ok(None);
        };
        builder
            .node(String::new(), None, first, span)
            .map_err(fail)?;
        // Read to the end so that syntax errors after the first node count.
        while builder.next_node().map_err(fail)?.is_some() {}
        Ok(Some(SourceMap {
            file: file.to_string(),
            text: chunk.text.chars().collect(),
            start: Mark {
                index: 0,
                line: chunk.line_offset + 1,
                column: 1,
            },
            entries: builder.entries,
            order: builder.order,
        }))
    }

    /// The file name given when parsing.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Every recorded path, in document order of their completion (children
    /// before their parent).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// The deepest path whose value starts at `line`:`column` (1-based), to
    /// name the field in errors that only carry a position.
    pub fn path_at(&self, line: u64, column: u64) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.start.line == line && e.start.column == column)
            .map(|(p, _)| p.as_str())
            .max_by_key(|p| (p.len(), *p))
    }

    /// The path of the mapping entry whose key starts at `line`:`column`.
    pub fn key_path_at(&self, line: u64, column: u64) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.key.is_some_and(|k| k.line == line && k.column == column))
            .map(|(p, _)| p.as_str())
            .max_by_key(|p| (p.len(), *p))
    }

    /// Whether the document has a node at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Where the value at `path` starts.
    pub fn value(&self, path: &str) -> Option<Position> {
        self.entries.get(path).map(|e| self.pos(e.start))
    }

    /// Where the key of the mapping entry at `path` starts (none for sequence items).
    pub fn key(&self, path: &str) -> Option<Position> {
        self.entries
            .get(path)
            .and_then(|e| e.key)
            .map(|m| self.pos(m))
    }

    /// The best position for a problem about `path`: its value, else the
    /// nearest enclosing node that exists, else the document's start.
    pub fn position(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if let Some(pos) = self.value(p) {
                return pos;
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return self.pos(self.start),
            }
        }
    }

    /// The position of the key at `path` if it has one, else [`Self::position`].
    pub fn key_or_position(&self, path: &str) -> Position {
        self.key(path).unwrap_or_else(|| self.position(path))
    }

    /// The position of a piece of a scalar's value: `value` is the scalar as
    /// deserialized, `offset` a byte offset into it where `needle` starts.
    ///
    /// The value may be quoted, folded or a block scalar, so the k-th
    /// occurrence of `needle` in the value is matched with the k-th occurrence
    /// in the raw source text of the node; when that fails, the scalar's start.
    pub fn position_in_value(
        &self,
        path: &str,
        value: &str,
        offset: usize,
        needle: &str,
    ) -> Position {
        let Some(entry) = self.entries.get(path) else {
            return self.position(path);
        };
        if needle.is_empty() || offset > value.len() || !value.is_char_boundary(offset) {
            return self.pos(entry.start);
        }
        let k = value[..offset].matches(needle).count();
        let lo = entry.start.index.min(self.text.len());
        let hi = entry.end.index.clamp(lo, self.text.len());
        let raw: String = self.text[lo..hi].iter().collect();
        let Some((byte_at, _)) = raw.match_indices(needle).nth(k) else {
            return self.pos(entry.start);
        };
        let mut m = entry.start;
        for c in raw[..byte_at].chars() {
            if c == '\n' {
                m.line += 1;
                m.column = 1;
            } else {
                m.column += 1;
            }
        }
        self.pos(m)
    }

    fn pos(&self, m: Mark) -> Position {
        Position {
            file: self.file.clone(),
            line: m.line,
            column: m.column,
        }
    }
}

/// The enclosing path: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``; `None` for ``.
pub(crate) fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']')
        && let Some(i) = path.rfind('[')
    {
        return Some(&path[..i]);
    }
    match path.rfind('.') {
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

/// Turns parser events into path → position entries.
struct Builder<'t> {
    events: Parser<'t, StrInput<'t>>,
    line_offset: u64,
    entries: HashMap<String, Entry>,
    order: Vec<String>,
}

impl<'t> Builder<'t> {
    fn mark(&self, m: &Marker) -> Mark {
        Mark {
            index: m.index(),
            line: m.line() as u64 + self.line_offset,
            column: m.col() as u64 + 1,
        }
    }

    /// The next event that is a node or the end of a collection, skipping
    /// stream/document markers, anchors and comments. `None` at the end.
    fn next_node(&mut self) -> Result<Option<(Event<'t>, Span)>, ScanError> {
        loop {
            match self.events.next_event() {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok((ev, span))) => match ev {
                    Event::Scalar(..)
                    | Event::SequenceStart(..)
                    | Event::SequenceEnd
                    | Event::MappingStart(..)
                    | Event::MappingEnd
                    | Event::Alias(..)
                    | Event::UnresolvedAlias(..) => return Ok(Some((ev, span))),
                    _ => continue,
                },
            }
        }
    }

    /// Records the node that starts with `ev` (and, for collections, all of
    /// its children) under `path`.
    fn node(
        &mut self,
        path: String,
        key: Option<Mark>,
        ev: Event<'t>,
        span: Span,
    ) -> Result<(), ScanError> {
        let start = self.mark(&span.start);
        let mut end = self.mark(&span.end);
        match ev {
            Event::SequenceStart(..) => {
                let mut i = 0;
                while let Some((ev, span)) = self.next_node()? {
                    if matches!(ev, Event::SequenceEnd) {
                        end = self.mark(&span.end);
                        break;
                    }
                    self.node(format!("{path}[{i}]"), None, ev, span)?;
                    i += 1;
                }
            }
            Event::MappingStart(..) => {
                while let Some((kev, kspan)) = self.next_node()? {
                    if matches!(kev, Event::MappingEnd) {
                        end = self.mark(&kspan.end);
                        break;
                    }
                    let name = match &kev {
                        Event::Scalar(text, ..) => text.to_string(),
                        _ => "?".to_string(),
                    };
                    if name == "?" {
                        // A complex key: walk it out of the way.
                        self.node(format!("{path}.?key"), None, kev, kspan)?;
                    }
                    let kmark = self.mark(&kspan.start);
                    let Some((vev, vspan)) = self.next_node()? else {
                        break;
                    };
                    let child = if path.is_empty() {
                        name
                    } else {
                        format!("{path}.{name}")
                    };
                    self.node(child, Some(kmark), vev, vspan)?;
                }
            }
            _ => {}
        }
        if !self.entries.contains_key(&path) {
            self.order.push(path.clone());
        }
        self.entries.insert(path, Entry { key, start, end });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> SourceMap {
        let mut maps = SourceMap::parse(src, "f.yaml").expect("parses");
        assert_eq!(maps.len(), 1);
        maps.remove(0)
    }

    fn lc(p: Option<Position>) -> Option<(u64, u64)> {
        p.map(|p| (p.line, p.column))
    }

    #[test]
    fn records_values_and_keys_by_path() {
        let src =
            "spec:\n  templates:\n  - name: a\n    steps:\n    - - name: s\n        template: b\n";
        let m = one(src);
        assert_eq!(lc(m.value("spec.templates[0].name")), Some((3, 11)));
        assert_eq!(lc(m.key("spec.templates[0].name")), Some((3, 5)));
        assert_eq!(
            lc(m.value("spec.templates[0].steps[0][0].template")),
            Some((6, 19))
        );
        assert_eq!(lc(m.value("spec.templates[0].steps[0][0]")), Some((5, 9)));
        assert_eq!(
            lc(Some(m.position("spec.templates[0].steps[0][0].nope"))),
            Some((5, 9))
        );
    }

    #[test]
    fn json_is_read_too() {
        let src = "{\n  \"spec\": {\n    \"entrypoint\": \"main\"\n  }\n}\n";
        let m = one(src);
        assert_eq!(lc(m.value("spec.entrypoint")), Some((3, 19)));
        assert_eq!(lc(m.key("spec.entrypoint")), Some((3, 5)));
    }

    #[test]
    fn documents_are_split_and_keep_file_lines() {
        let src = "# c\nkind: A\n---\nkind: B\n---\n# only a comment\n---\nkind: C\n";
        let maps = SourceMap::parse(src, "f.yaml").expect("parses");
        let kinds: Vec<_> = maps.iter().map(|m| lc(m.value("kind"))).collect();
        assert_eq!(kinds, vec![Some((2, 7)), Some((4, 7)), Some((8, 7))]);
    }

    #[test]
    fn positions_inside_scalars() {
        let src = "a: x {{b}} y {{c}}\nq: \"p {{c}}\"\nblock: |\n  one\n  two {{d}}\n";
        let m = one(src);
        let v = "x {{b}} y {{c}}";
        assert_eq!(
            lc(Some(m.position_in_value("a", v, 10, "{{"))),
            Some((1, 14))
        );
        assert_eq!(
            lc(Some(m.position_in_value("q", "p {{c}}", 2, "{{"))),
            Some((2, 7))
        );
        let b = "one\ntwo {{d}}\n";
        assert_eq!(
            lc(Some(m.position_in_value("block", b, 8, "{{"))),
            Some((5, 7))
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = SourceMap::parse("a: b\n---\nc: [1, 2\n", "f.yaml").expect_err("bad");
        assert_eq!(err.position.file, "f.yaml");
        assert!(err.position.line >= 3, "{err}");
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a.b[2][3]"), Some("a.b[2]"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
    }
}
