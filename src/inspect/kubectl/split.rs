//! Where each item of a kubectl List starts and ends, found in its bytes
//! as they are read, without decoding anything: the streaming reader hands
//! runs of items to the decoding threads as soon as they are cut. serde_json
//! reading from a stream goes byte by byte through `Read`, keeping lines and
//! columns: cutting 100 MiB of pods that way took 0.3 s of a core the
//! decoders needed (a third of the load on two cores). This looks only at
//! quotes, backslashes and brackets, jumping through strings with memchr.
//!
//! It is a cutter, not a validator: on valid JSON it finds exactly the
//! items serde_json finds; what it lets through of invalid JSON fails when
//! the item is decoded, and the file is then read the whole-file way, which
//! says what is wrong and where. It stops ([`Unsplittable`]) at what it
//! does not take: a document that is not an object, an item that is not an
//! object, a list kind with escapes.

use std::ops::Range;

/// The document is not a List this splitter takes (or not JSON): read it
/// the whole-file way.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unsplittable;

/// Where the splitter is in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the document's `{`.
    Open,
    /// After `{` or `,` in the document's map: a key (or `}` when
    /// `first`).
    Key { first: bool },
    /// After a value of the document's map: `,` or `}`.
    CommaOrEnd,
    /// Skipping a value of the document's map that is not `items`.
    Value(Skip),
    /// In `items`, before an item (or `]` when `first`).
    Item { first: bool },
    /// In an item that started at `start`.
    InItem { start: usize, skip: Skip },
    /// After an item: `,` or `]`.
    AfterItem,
    /// After the document's `}`: only white space may follow.
    Done,
}

/// A value being skipped, resumable at a chunk's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Skip {
    /// Open brackets (`{` and `[`).
    depth: u32,
    in_string: bool,
    /// The byte before was a backslash in a string.
    escaped: bool,
    /// A number, `true`, `false` or `null` is being read.
    in_scalar: bool,
}

impl Skip {
    /// Moves through `buf` from `*at`; `true` once the value has ended
    /// (`*at` just past it).
    fn run(&mut self, buf: &[u8], at: &mut usize) -> bool {
        while *at < buf.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    *at += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &buf[*at..]) {
                    None => *at = buf.len(),
                    Some(i) => {
                        *at += i + 1;
                        if buf[*at - 1] == b'\\' {
                            self.escaped = true;
                        } else {
                            self.in_string = false;
                            if self.depth == 0 {
                                return true;
                            }
                        }
                    }
                }
                continue;
            }
            if self.depth > 0 {
                // Inside a map or list only quotes and brackets count: a
                // scalar there holds none, and the white space between
                // (half of kubectl's indented text) is jumped over.
                self.in_scalar = false;
                match next_structural(&buf[*at..]) {
                    Some(i) => *at += i,
                    None => {
                        *at = buf.len();
                        return false;
                    }
                }
            }
            let b = buf[*at];
            if self.in_scalar {
                // A scalar ends where a separator or white space starts
                // (not consumed: the map or list reads it).
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    self.in_scalar = false;
                    if self.depth == 0 {
                        return true;
                    }
                    continue;
                }
                *at += 1;
                continue;
            }
            *at += 1;
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return true;
                    }
                }
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => {}
                _ => self.in_scalar = true,
            }
        }
        false
    }
}

/// Where the next quote or bracket (`"`, `{`, `[`, `}`, `]`) is in
/// `buf`, eight bytes at a time: a byte equal to one of them in a word is
/// found as a zero byte of the word xor that byte repeated (the lowest
/// such byte is exact; borrows only set bits above it). ORing 0x20 folds
/// `[` onto `{` and `]` onto `}`; outside strings nothing else folds onto
/// them (0x5B and 0x5D are the brackets; a control byte 0x02 is not JSON).
fn next_structural(buf: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let is = |b: u8| b == b'"' || b | 0x20 == b'{' || b | 0x20 == b'}';
    let mut words = buf.chunks_exact(8);
    for (k, word) in words.by_ref().enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let folded = w | (ONES * 0x20);
        let found = zero_byte(w ^ (ONES * u64::from(b'"')))
            | zero_byte(folded ^ (ONES * u64::from(b'{')))
            | zero_byte(folded ^ (ONES * u64::from(b'}')));
        if found != 0 {
            return Some(8 * k + found.trailing_zeros() as usize / 8);
        }
    }
    let tail = words.remainder();
    let from = buf.len() - tail.len();
    tail.iter().position(|&b| is(b)).map(|i| from + i)
}

/// Splits one List, fed its bytes as they come.
#[derive(Debug)]
pub(super) struct Splitter {
    at: usize,
    state: At,
    /// Whether the document had `items`.
    pub items: bool,
    /// The list's own kind, less `List`, when it came before its items.
    pub list_kind: Option<String>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first byte at or after `at` that is not white space.
fn skip_space(buf: &[u8], at: usize) -> Option<usize> {
    (at..buf.len()).find(|&i| !is_space(buf[i]))
}

/// A string starting at the quote at `at`, without escapes: its contents
/// and the index just past it (`Ok(None)`: not all in `buf` yet).
fn plain_string(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Unsplittable> {
    match memchr::memchr2(b'"', b'\\', &buf[at + 1..]) {
        None => Ok(None),
        Some(i) if buf[at + 1 + i] == b'"' => Ok(Some((&buf[at + 1..at + 1 + i], at + 2 + i))),
        // A key or kind spelled with escapes: left to serde_json.
        Some(_) => Err(Unsplittable),
    }
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter {
            at: 0,
            state: At::Open,
            items: false,
            list_kind: None,
        }
    }

    /// The first byte of the buffer still needed: everything before it may
    /// be dropped (then [`Splitter::shift`] by as much).
    pub fn needed(&self) -> usize {
        match self.state {
            At::InItem { start, .. } => start,
            _ => self.at,
        }
    }

    /// The buffer lost its first `n` bytes (`n <=` [`Splitter::needed`]).
    pub fn shift(&mut self, n: usize) {
        self.at -= n;
        if let At::InItem { start, .. } = &mut self.state {
            *start -= n;
        }
    }

    /// Reads on through `buf` (the bytes kept so far, then new ones),
    /// pushing each item completed. `eof`: no more bytes will come, and
    /// the document must be complete.
    pub fn scan(
        &mut self,
        buf: &[u8],
        eof: bool,
        items: &mut Vec<Range<usize>>,
    ) -> Result<(), Unsplittable> {
        loop {
            let before = (self.at, self.state);
            self.step(buf, items)?;
            if (self.at, self.state) == before {
                break;
            }
        }
        // After the document's end, anything but white space failed `step`.
        if eof && self.state != At::Done {
            return Err(Unsplittable);
        }
        Ok(())
    }

    /// One token (or as much of a skipped value as `buf` holds); leaves
    /// the state as it was when the token is not all there.
    fn step(&mut self, buf: &[u8], items: &mut Vec<Range<usize>>) -> Result<(), Unsplittable> {
        // A value being skipped goes on where it stopped (white space may
        // be inside it, or end it).
        match self.state {
            At::Value(mut skip) => {
                let mut at = self.at;
                let ended = skip.run(buf, &mut at);
                self.at = at;
                self.state = if ended {
                    At::CommaOrEnd
                } else {
                    At::Value(skip)
                };
                return Ok(());
            }
            At::InItem { start, mut skip } => {
                let mut at = self.at;
                if skip.run(buf, &mut at) {
                    items.push(start..at);
                    self.state = At::AfterItem;
                } else {
                    self.state = At::InItem { start, skip };
                }
                self.at = at;
                return Ok(());
            }
            _ => {}
        }
        let Some(i) = skip_space(buf, self.at) else {
            return Ok(());
        };
        match self.state {
            At::Open => {
                if buf[i] != b'{' {
                    return Err(Unsplittable);
                }
                (self.at, self.state) = (i + 1, At::Key { first: true });
            }
            At::Key { first } => match buf[i] {
                b'}' if first => (self.at, self.state) = (i + 1, At::Done),
                b'"' => return self.key(buf, i),
                _ => return Err(Unsplittable),
            },
            At::CommaOrEnd => match buf[i] {
                b',' => (self.at, self.state) = (i + 1, At::Key { first: false }),
                b'}' => (self.at, self.state) = (i + 1, At::Done),
                _ => return Err(Unsplittable),
            },
            At::Item { first } => match buf[i] {
                b']' if first => (self.at, self.state) = (i + 1, At::CommaOrEnd),
                b'{' => {
                    self.state = At::InItem {
                        start: i,
                        skip: Skip::default(),
                    };
                    self.at = i;
                }
                _ => return Err(Unsplittable),
            },
            At::AfterItem => match buf[i] {
                b',' => (self.at, self.state) = (i + 1, At::Item { first: false }),
                b']' => (self.at, self.state) = (i + 1, At::CommaOrEnd),
                _ => return Err(Unsplittable),
            },
            At::Done => return Err(Unsplittable),
            // Went on above.
            At::Value(_) | At::InItem { .. } => {}
        }
        Ok(())
    }

    /// A key of the document's map at the quote at `at`, its colon, and
    /// the start of its value.
    fn key(&mut self, buf: &[u8], at: usize) -> Result<(), Unsplittable> {
        let Some((key, end)) = plain_string(buf, at)? else {
            return Ok(());
        };
        let Some(colon) = skip_space(buf, end) else {
            return Ok(());
        };
        if buf[colon] != b':' {
            return Err(Unsplittable);
        }
        let Some(value) = skip_space(buf, colon + 1) else {
            return Ok(());
        };
        match key {
            b"items" if !self.items => {
                if buf[value] != b'[' {
                    return Err(Unsplittable);
                }
                self.items = true;
                (self.at, self.state) = (value + 1, At::Item { first: true });
            }
            b"items" => return Err(Unsplittable),
            // A list's kind is a string (else the whole-file way says so);
            // it names the items only when it comes before them.
            b"kind" => {
                if buf[value] != b'"' {
                    return Err(Unsplittable);
                }
                let Some((kind, end)) = plain_string(buf, value)? else {
                    return Ok(());
                };
                let kind = std::str::from_utf8(kind).map_err(|_| Unsplittable)?;
                if !self.items {
                    self.list_kind = Some(kind.trim_end_matches("List").to_string());
                }
                (self.at, self.state) = (end, At::CommaOrEnd);
            }
            _ => (self.at, self.state) = (value, At::Value(Skip::default())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    /// The items serde_json finds, as text.
    fn theirs(doc: &str) -> Option<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Doc<'a> {
            #[serde(borrow)]
            items: Vec<&'a RawValue>,
        }
        let d: Doc = serde_json::from_str(doc).ok()?;
        Some(d.items.iter().map(|r| r.get().to_string()).collect())
    }

    /// The items found when `doc` comes `chunk` bytes at a time, the buffer
    /// dropping what is no longer needed as a reader would.
    fn ours(doc: &str, chunk: usize) -> Result<(Vec<String>, Option<String>), Unsplittable> {
        let mut s = Splitter::new();
        let (mut buf, mut ranges, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let mut dropped = 0;
        let bytes = doc.as_bytes();
        let mut fed = 0;
        loop {
            let next = (fed + chunk).min(bytes.len());
            buf.extend_from_slice(&bytes[fed..next]);
            fed = next;
            let eof = fed == bytes.len();
            s.scan(&buf, eof, &mut ranges)?;
            for r in ranges.drain(..) {
                out.push(String::from_utf8(buf[r].to_vec()).unwrap());
            }
            let n = s.needed();
            buf.drain(..n);
            s.shift(n);
            dropped += n;
            if eof {
                break;
            }
        }
        assert!(dropped <= bytes.len());
        Ok((out, s.list_kind))
    }

    const TRICKY: &str = r#"  {
        "apiVersion" : "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": "", "x": [1, {"]": "}"}, -2.5e3, true, null]},
        "items" : [
          {"metadata": {"name": "a\"]},{", "labels": {"k\\": "v\\\\"}}, "n": [[], {}]},
          { "spec": {"x": "é ✓ \u00e9"}, "n": 12 } ,
          {}
        ],
        "more": false
    }
    "#;

    #[test]
    fn items_are_cut_as_serde_json_reads_them_at_any_chunk_size() {
        let want = theirs(TRICKY).unwrap();
        assert_eq!(want.len(), 3);
        for chunk in [1, 2, 3, 5, 7, 16, 64, 4096] {
            let (got, kind) = ours(TRICKY, chunk).unwrap();
            assert_eq!(got, want, "chunk {chunk}");
            assert_eq!(kind.as_deref(), Some("Pod"));
        }
    }

    #[test]
    fn a_kind_after_the_items_is_not_the_lists_own() {
        let doc = r#"{"items": [{"a": 1}], "kind": "PodList"}"#;
        let (items, kind) = ours(doc, 4).unwrap();
        assert_eq!((items.len(), kind), (1, None));
        let empty = ours(r#"{"kind":"List","items":[]}"#, 3).unwrap();
        assert_eq!(empty, (vec![], Some(String::new())));
    }

    #[test]
    fn what_it_does_not_take_is_refused() {
        for doc in [
            r#"[{"a": 1}]"#,
            r#"{"items": [1, 2]}"#,
            r#"{"items": {"a": 1}}"#,
            r#"{"it\u0065ms": [{"a": 1}]}"#,
            r#"{"kind": "Pod\u004cist", "items": []}"#,
            r#"{"items": [{"a": 1}], "items": []}"#,
            r#"{"items": [{"a": 1},]}"#,
            r#"{"items": [{"a": 1}"#,
            r#"{"items": []} {}"#,
            r#"{"a" 1}"#,
            r#"{"kind": 5, "items": []}"#,
            "",
        ] {
            assert_eq!(ours(doc, 3), Err(Unsplittable), "{doc}");
        }
    }

    #[test]
    fn the_next_quote_or_bracket_is_found_in_any_word_position() {
        let naive = |b: &[u8]| b.iter().position(|c| b"\"{[]}".contains(c));
        for at in 0..20 {
            for c in [b'"', b'{', b'[', b']', b'}'] {
                let mut buf = vec![b' '; 20];
                buf[at] = c;
                // Bytes a bit away from them are not them (k m ; = and
                // 'b' beside `{` `}` and `"`).
                for (i, b) in buf.iter_mut().take(at).enumerate() {
                    *b = b"km;=b,:1 "[i % 9];
                }
                assert_eq!(next_structural(&buf), Some(at), "{c} at {at}");
                // A second one after it does not move the first.
                buf.push(b'"');
                assert_eq!(next_structural(&buf), naive(&buf));
            }
        }
        assert_eq!(next_structural(b"  1, true, null, -2.5e3 : ,\n\t"), None);
        assert_eq!(next_structural(b""), None);
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            "[ -~\\\\\"\\]\\[{}é]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z\"\\\\{]{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Random items, printed compact and pretty, cut at random chunk
        /// sizes: the same items as serde_json's.
        #[test]
        fn random_lists_are_cut_as_serde_json_reads_them(
            items in prop::collection::vec(
                prop::collection::btree_map("[a-z]{0,4}", json(), 0..4), 0..8),
            pretty in any::<bool>(),
            chunk in 1usize..40,
        ) {
            let doc = serde_json::json!({"apiVersion": "v1", "items": items, "kind": "List"});
            let text = if pretty {
                serde_json::to_string_pretty(&doc).unwrap()
            } else {
                serde_json::to_string(&doc).unwrap()
            };
            let (got, _) = ours(&text, chunk).unwrap();
            prop_assert_eq!(got, theirs(&text).unwrap());
        }
    }
}
