//! A small regular-expression engine for the content filter's custom
//! patterns (`pattern_type: regex`), written here because a general one
//! would not fit the module's size budget.
//!
//! Syntax: the part of Python's `re` that detection patterns use — literals
//! and escapes, `.`, classes (`[a-z0-9_]`, `[^...]`, `\d \w \s` and their
//! negations), anchors `^ $ \A \Z \b \B`, groups `( )` `(?: )` `(?P<name> )`,
//! alternation, and the quantifiers `* + ? {n} {n,} {n,m}` greedy or lazy
//! (`*?`). Matching is on characters and case-insensitive (LiteLLM compiles
//! custom patterns with `re.IGNORECASE`) for ASCII letters; `\d` is an
//! ASCII digit and `\w` a word character (see `is_word`), where Python's
//! Unicode tables would also count other scripts' digits and case pairs:
//! those tables do not fit the module. What is not there — look-around, back-references, inline
//! flags other than `(?i)` — is an error at load naming the construct, so a
//! pattern never silently means something else.
//!
//! The search is a Pike VM: time linear in the text for a given pattern,
//! memory in the pattern's size, and Python's leftmost-first answer (the
//! earliest start; among those, the alternative and repetition Python would
//! prefer). No pattern can make it backtrack exponentially.

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regex {
    prog: Vec<Inst>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Inst {
    /// One character (already lower-cased).
    Char(char),
    /// Any character but `\n`.
    Any,
    /// A class: ranges (lower-cased bounds kept as written) and negation.
    Class(Box<Class>),
    Assert(Assertion),
    /// Try `x` first, then `y`.
    Split(usize, usize),
    Jmp(usize),
    Match,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assertion {
    Start,
    End,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Class {
    ranges: Vec<(char, char)>,
    /// `\d`, `\w`, `\s` and their negations inside the class.
    kinds: Vec<(Kind, bool)>,
    negated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Digit,
    Word,
    Space,
}

/// The parsed pattern, before compilation.
#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(Class),
    Assert(Assertion),
    Alt(Vec<Vec<Node>>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
}

/// The most a counted repetition may say, and the largest program.
const MAX_COUNT: u32 = 100;
const MAX_PROG: usize = 20_000;

// Character classes without Unicode tables (they would not fit the
// module): `\w` is an ASCII letter, digit or `_`, or any non-ASCII
// character that is not a space (in the texts guardrails read, those are
// letters); `\d` is an ASCII digit; `\s` ASCII and Unicode spaces.

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (!c.is_ascii() && !is_space(c))
}

fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            '\u{b}' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
        )
}

fn kind_matches(k: Kind, c: char) -> bool {
    match k {
        Kind::Digit => c.is_ascii_digit(),
        Kind::Word => is_word(c),
        Kind::Space => is_space(c),
    }
}

/// `c` lower-cased if it is an ASCII letter (case-insensitive matching is
/// ASCII's: other letters match as written).
fn fold(c: char) -> char {
    c.to_ascii_lowercase()
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let f = fold(c);
        let upper = c.to_ascii_uppercase();
        let hit = self.ranges.iter().any(|&(lo, hi)| {
            (lo..=hi).contains(&c) || (lo..=hi).contains(&f) || (lo..=hi).contains(&upper)
        }) || self
            .kinds
            .iter()
            .any(|&(k, negated)| kind_matches(k, c) != negated);
        hit != self.negated
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    pattern: &'a str,
}

impl Parser<'_> {
    fn err(&self, what: impl std::fmt::Display) -> RegexError {
        RegexError(format!("{what} in `{}`", self.pattern))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// alternatives := sequence ('|' sequence)*
    fn alternatives(&mut self, depth: u32) -> Result<Vec<Vec<Node>>, RegexError> {
        if depth > 50 {
            return Err(self.err("groups nested too deep"));
        }
        let mut alts = vec![self.sequence(depth)?];
        while self.eat('|') {
            alts.push(self.sequence(depth)?);
        }
        Ok(alts)
    }

    fn sequence(&mut self, depth: u32) -> Result<Vec<Node>, RegexError> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(depth)?;
            seq.push(self.quantified(atom)?);
        }
        Ok(seq)
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, RegexError> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => match self.counted()? {
                Some(b) => b,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        // The quantifier itself (`*`, `+`, `?`, or the `}` of a count).
        self.at += 1;
        if matches!(atom, Node::Assert(_)) {
            return Err(self.err("a quantifier on an anchor"));
        }
        let greedy = !self.eat('?');
        if self.eat('+') {
            return Err(self.err("possessive quantifiers are not supported"));
        }
        if let Some(c @ ('*' | '+' | '?')) = self.peek() {
            return Err(self.err(format!("a quantifier `{c}` after a quantifier")));
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }

    /// `{n}`, `{n,}`, `{n,m}` (the cursor on `{`, left on `}`); `None`: a
    /// literal `{` (as in Python).
    fn counted(&mut self) -> Result<Option<(u32, Option<u32>)>, RegexError> {
        let start = self.at;
        self.at += 1;
        let number = |p: &mut Self| -> Option<u32> {
            let from = p.at;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.at += 1;
            }
            let s: String = p.chars[from..p.at].iter().collect();
            s.parse().ok()
        };
        let min = number(self);
        let comma = self.eat(',');
        let max = if comma { number(self) } else { min };
        let closed = self.peek() == Some('}');
        // `{,n}` is `{0,n}` (Python 3.11); `{,}` and `{}` are literal text.
        let min = match (min, comma, max) {
            (None, true, Some(_)) => Some(0),
            _ => min,
        };
        let Some(min) = min.filter(|_| closed) else {
            self.at = start;
            return Ok(None);
        };
        if max.is_some_and(|m| m < min) || min > MAX_COUNT || max.is_some_and(|m| m > MAX_COUNT) {
            return Err(self.err(format!("a repetition count over {MAX_COUNT} or reversed")));
        }
        Ok(Some((min, max)))
    }

    fn atom(&mut self, depth: u32) -> Result<Node, RegexError> {
        let Some(c) = self.peek() else {
            return Err(self.err("an unexpected end"));
        };
        self.at += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Assert(Assertion::Start),
            '$' => Node::Assert(Assertion::End),
            '[' => Node::Class(self.class()?),
            '(' => {
                if self.eat('?') {
                    if self.eat(':') {
                    } else if self.eat('P') && self.eat('<') {
                        while self.peek().is_some_and(|c| c != '>') {
                            self.at += 1;
                        }
                        if !self.eat('>') {
                            return Err(self.err("an unclosed group name"));
                        }
                    } else if self.eat('i') && self.eat(')') {
                        // (?i): matching is case-insensitive anyway.
                        return Ok(Node::Alt(vec![Vec::new()]));
                    } else {
                        return Err(self.err(
                            "look-around and inline flags other than (?i) are not supported",
                        ));
                    }
                }
                let alts = self.alternatives(depth + 1)?;
                if !self.eat(')') {
                    return Err(self.err("an unclosed group"));
                }
                Node::Alt(alts)
            }
            ')' => return Err(self.err("an unbalanced `)`")),
            '{' => {
                self.at -= 1;
                if self.counted()?.is_some() {
                    return Err(self.err("nothing to repeat before `{`"));
                }
                self.at += 1;
                Node::Char('{')
            }
            '*' | '+' | '?' => return Err(self.err(format!("nothing to repeat before `{c}`"))),
            '\\' => self.escape(false)?,
            c => Node::Char(fold(c)),
        })
    }

    /// After `\`: an atom (outside a class) or, in a class, a char or kind.
    fn escape(&mut self, in_class: bool) -> Result<Node, RegexError> {
        let Some(c) = self.peek() else {
            return Err(self.err("a trailing backslash"));
        };
        self.at += 1;
        let kind = |k: Kind, negated: bool| {
            Node::Class(Class {
                kinds: vec![(k, negated)],
                ..Class::default()
            })
        };
        Ok(match c {
            'd' => kind(Kind::Digit, false),
            'D' => kind(Kind::Digit, true),
            'w' => kind(Kind::Word, false),
            'W' => kind(Kind::Word, true),
            's' => kind(Kind::Space, false),
            'S' => kind(Kind::Space, true),
            'b' if !in_class => Node::Assert(Assertion::WordBoundary),
            'B' if !in_class => Node::Assert(Assertion::NotWordBoundary),
            'A' if !in_class => Node::Assert(Assertion::Start),
            'Z' | 'z' if !in_class => Node::Assert(Assertion::End),
            'n' => Node::Char('\n'),
            't' => Node::Char('\t'),
            'r' => Node::Char('\r'),
            'b' => Node::Char('\u{8}'),
            '0'..='9' => return Err(self.err("back-references are not supported")),
            c if c.is_ascii_alphanumeric() => {
                return Err(self.err(format!("the escape `\\{c}` is not supported")))
            }
            c => Node::Char(fold(c)),
        })
    }

    /// After `[`, up to and including `]`.
    fn class(&mut self) -> Result<Class, RegexError> {
        let mut class = Class {
            negated: self.eat('^'),
            ..Class::default()
        };
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("an unclosed `[`"));
            };
            if c == ']' && !first {
                self.at += 1;
                return Ok(class);
            }
            first = false;
            self.at += 1;
            let lo = if c == '\\' {
                match self.escape(true)? {
                    Node::Char(x) => x,
                    Node::Class(k) => {
                        class.kinds.extend(k.kinds);
                        continue;
                    }
                    _ => return Err(self.err("an escape in a class")),
                }
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.at + 1).is_some_and(|&n| n != ']') {
                self.at += 1;
                let Some(mut hi) = self.peek() else {
                    return Err(self.err("an unclosed `[`"));
                };
                self.at += 1;
                if hi == '\\' {
                    hi = match self.escape(true)? {
                        Node::Char(x) => x,
                        _ => return Err(self.err("a class escape as a range bound")),
                    };
                }
                if hi < lo {
                    return Err(self.err(format!("the reversed range `{lo}-{hi}`")));
                }
                class.ranges.push((lo, hi));
            } else {
                class.ranges.push((lo, lo));
            }
        }
    }
}

/// Compile `nodes` (one alternative's sequence) onto `prog`.
fn emit_seq(nodes: &[Node], prog: &mut Vec<Inst>) -> Result<(), RegexError> {
    for n in nodes {
        emit(n, prog)?;
    }
    Ok(())
}

fn emit(node: &Node, prog: &mut Vec<Inst>) -> Result<(), RegexError> {
    if prog.len() > MAX_PROG {
        return Err(RegexError("the pattern is too large".into()));
    }
    match node {
        Node::Char(c) => prog.push(Inst::Char(*c)),
        Node::Any => prog.push(Inst::Any),
        Node::Class(c) => prog.push(Inst::Class(Box::new(c.clone()))),
        Node::Assert(a) => prog.push(Inst::Assert(*a)),
        Node::Alt(alts) => {
            // split L1, next; L1: alt0; jmp end; next: split L2, ... ; last alt
            let mut jumps = Vec::new();
            for (i, alt) in alts.iter().enumerate() {
                if i + 1 < alts.len() {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    emit_seq(alt, prog)?;
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let next = prog.len();
                    prog[split] = Inst::Split(split + 1, next);
                } else {
                    emit_seq(alt, prog)?;
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jmp(end);
            }
        }
        Node::Repeat {
            node,
            min,
            max,
            greedy,
        } => {
            for _ in 0..*min {
                emit(node, prog)?;
            }
            let split = |x: usize, y: usize| {
                if *greedy {
                    Inst::Split(x, y)
                } else {
                    Inst::Split(y, x)
                }
            };
            match max {
                None => {
                    // L: split body, end; body; jmp L
                    let l = prog.len();
                    prog.push(Inst::Jmp(0));
                    emit(node, prog)?;
                    prog.push(Inst::Jmp(l));
                    let end = prog.len();
                    prog[l] = split(l + 1, end);
                }
                Some(max) => {
                    let mut holes = Vec::new();
                    for _ in *min..*max {
                        holes.push(prog.len());
                        prog.push(Inst::Jmp(0));
                        emit(node, prog)?;
                    }
                    let end = prog.len();
                    for h in holes {
                        prog[h] = split(h + 1, end);
                    }
                }
            }
        }
    }
    Ok(())
}

impl Regex {
    /// Compile `pattern`.
    pub fn new(pattern: &str) -> Result<Regex, RegexError> {
        let mut p = Parser {
            chars: pattern.chars().collect(),
            at: 0,
            pattern,
        };
        let alts = p.alternatives(0)?;
        if p.at < p.chars.len() {
            return Err(p.err("an unbalanced `)`"));
        }
        let mut prog = Vec::new();
        emit(&Node::Alt(alts), &mut prog)?;
        prog.push(Inst::Match);
        Ok(Regex { prog })
    }

    /// Byte spans of the matches in `text`, left to right, not overlapping
    /// (as Python's `finditer`; an empty match moves on one character).
    pub fn find_all(&self, text: &str) -> Vec<(usize, usize)> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut out = Vec::new();
        let mut from = 0;
        while from <= chars.len() {
            let Some((s, e)) = self.search(&chars, from) else {
                break;
            };
            let byte = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
            if e > s {
                out.push((byte(s), byte(e)));
                from = e;
            } else {
                from = s + 1;
            }
        }
        out
    }

    /// The leftmost-first match starting at or after char `from`, as char
    /// indices.
    fn search(&self, chars: &[(usize, char)], from: usize) -> Option<(usize, usize)> {
        let n = self.prog.len();
        let mut clist = Threads::new(n);
        let mut nlist = Threads::new(n);
        let mut matched: Option<(usize, usize)> = None;
        let char_at = |i: usize| chars.get(i).map(|(_, c)| *c);
        for pos in from..=chars.len() {
            if matched.is_none() {
                self.add(&mut clist, 0, pos, pos, chars);
            }
            if clist.is_empty() && matched.is_some() {
                break;
            }
            let c = char_at(pos);
            for i in 0..clist.len() {
                let (pc, start) = clist.get(i);
                let step = match &self.prog[pc] {
                    Inst::Match => {
                        matched = Some((start, pos));
                        // Lower-priority threads lose to this match.
                        break;
                    }
                    Inst::Char(want) => c.is_some_and(|c| fold(c) == *want),
                    Inst::Any => c.is_some_and(|c| c != '\n'),
                    Inst::Class(cl) => c.is_some_and(|c| cl.matches(c)),
                    _ => false,
                };
                if step {
                    self.add(&mut nlist, pc + 1, start, pos + 1, chars);
                }
            }
            std::mem::swap(&mut clist, &mut nlist);
            nlist.clear();
            if c.is_none() {
                break;
            }
        }
        matched
    }

    /// Follow `pc`'s empty moves at char position `pos`, in priority order.
    fn add(
        &self,
        list: &mut Threads,
        pc: usize,
        start: usize,
        pos: usize,
        chars: &[(usize, char)],
    ) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !list.insert(pc, start) {
                continue;
            }
            match &self.prog[pc] {
                Inst::Jmp(x) => {
                    list.pop_last();
                    stack.push(*x);
                }
                Inst::Split(x, y) => {
                    list.pop_last();
                    stack.push(*y);
                    stack.push(*x);
                }
                Inst::Assert(a) => {
                    list.pop_last();
                    let before = pos
                        .checked_sub(1)
                        .and_then(|i| chars.get(i))
                        .map(|(_, c)| *c);
                    let after = chars.get(pos).map(|(_, c)| *c);
                    let boundary = before.is_some_and(is_word) != after.is_some_and(is_word);
                    let ok = match a {
                        Assertion::Start => pos == 0,
                        Assertion::End => pos == chars.len(),
                        Assertion::WordBoundary => boundary,
                        Assertion::NotWordBoundary => !boundary,
                    };
                    if ok {
                        stack.push(pc + 1);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A thread list: program counters in priority order, each at most once
/// per step, with the match start each carries.
struct Threads {
    dense: Vec<(usize, usize)>,
    /// Program counters visited this step (also the empty moves, which are
    /// not threads).
    seen: Vec<bool>,
    touched: Vec<usize>,
}

impl Threads {
    fn new(n: usize) -> Self {
        Threads {
            dense: Vec::new(),
            seen: vec![false; n],
            touched: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.dense.is_empty()
    }

    fn len(&self) -> usize {
        self.dense.len()
    }

    fn get(&self, i: usize) -> (usize, usize) {
        self.dense[i]
    }

    /// Mark `pc` visited and add it as a thread; false if already visited.
    fn insert(&mut self, pc: usize, start: usize) -> bool {
        if self.seen[pc] {
            return false;
        }
        self.seen[pc] = true;
        self.touched.push(pc);
        self.dense.push((pc, start));
        true
    }

    /// Undo the thread just added (an empty move is not a thread); it stays
    /// visited.
    fn pop_last(&mut self) {
        self.dense.pop();
    }

    fn clear(&mut self) {
        self.dense.clear();
        for pc in self.touched.drain(..) {
            self.seen[pc] = false;
        }
    }
}
