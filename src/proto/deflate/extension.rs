//! Parsing `Sec-WebSocket-Extensions` values (RFC 6455 §9.1): a comma-separated list of
//! extensions, each a name followed by `; param` or `; param=value` (value maybe quoted).

use std::borrow::Cow;

/// One extension of a list: its name and parameters. A parameter written `x=` (empty
/// value) has no value, as in Beast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extension<'a> {
    pub name: &'a str,
    pub params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

/// Splits `s` at `sep` outside double quotes (a backslash escapes the next character
/// inside quotes). Returns `None` if a quote is left open.
fn split_outside_quotes(s: &str, sep: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if quoted || escaped {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_value(v: &str) -> Option<Option<Cow<'_, str>>> {
    let v = v.trim_matches([' ', '\t']);
    if v.is_empty() {
        return Some(None);
    }
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.push(chars.next()?);
            } else if c == '"' {
                return None;
            } else {
                out.push(c);
            }
        }
        return Some(if out.is_empty() {
            None
        } else {
            Some(Cow::Owned(out))
        });
    }
    is_token(v).then_some(Some(Cow::Borrowed(v)))
}

fn parse_element(element: &str) -> Option<Extension<'_>> {
    let mut pieces = split_outside_quotes(element, b';')?.into_iter();
    let name = pieces.next()?.trim_matches([' ', '\t']);
    if !is_token(name) {
        return None;
    }
    let mut params = Vec::new();
    for p in pieces {
        let (pname, value) = match p.split_once('=') {
            Some((n, v)) => (n, parse_value(v)?),
            None => (p, None),
        };
        let pname = pname.trim_matches([' ', '\t']);
        if !is_token(pname) {
            return None;
        }
        params.push((pname, value));
    }
    Some(Extension { name, params })
}

/// Parses one field value. Each item is an extension, or `None` for a malformed element;
/// empty elements (`a,,b`) are skipped. A value that is not a string yields one `None`.
pub(crate) fn parse_list(value: &[u8]) -> Vec<Option<Extension<'_>>> {
    let Ok(s) = std::str::from_utf8(value) else {
        return vec![None];
    };
    let Some(elements) = split_outside_quotes(s, b',') else {
        return vec![None];
    };
    elements
        .into_iter()
        .filter(|e| !e.trim_matches([' ', '\t']).is_empty())
        .map(parse_element)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Option<Extension<'_>> {
        let mut v = parse_list(s.as_bytes());
        assert_eq!(v.len(), 1, "{s}");
        v.pop().unwrap()
    }

    #[test]
    fn lists() {
        let v = parse_list(b"permessage-deflate; client_max_window_bits, foo ,, x; a=\"1\"; b=");
        assert_eq!(v.len(), 3);
        let pmd = v[0].as_ref().unwrap();
        assert_eq!(pmd.name, "permessage-deflate");
        assert_eq!(pmd.params, vec![("client_max_window_bits", None)]);
        assert_eq!(v[1].as_ref().unwrap().name, "foo");
        let x = v[2].as_ref().unwrap();
        assert_eq!(x.params[0], ("a", Some(Cow::Borrowed("1"))));
        assert_eq!(x.params[1], ("b", None));
    }

    #[test]
    fn quoting() {
        let e = one("e; a=\"x,y;z\"; b=\"\\\"q\\\"\"").unwrap();
        assert_eq!(e.params[0].1.as_deref(), Some("x,y;z"));
        assert_eq!(e.params[1].1.as_deref(), Some("\"q\""));
        assert_eq!(one("e; a=\"\"").unwrap().params[0].1, None);
        assert!(one("e; a=\"open").is_none());
        assert!(one("e; a=\"x\"y\"").is_none());
    }

    #[test]
    fn malformed() {
        assert!(one("; a").is_none());
        assert!(one("e; =1").is_none());
        assert!(one("e; a b").is_none());
        assert!(one("e; a=1 2").is_none());
        assert!(one("e f").is_none());
        assert_eq!(parse_list(b"\xff"), vec![None]);
        assert!(parse_list(b" , ").is_empty());
    }
}
