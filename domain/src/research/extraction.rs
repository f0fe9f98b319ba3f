//! Entity and relation extraction: the port an extractor implements, and the default one,
//! [`RuleExtractor`], which needs no model.
//!
//! Graph-building without an LLM (LazyGraphRAG's observation): names, handles, hashtags,
//! domains and the tenant's own terms, linked by co-occurrence within a chunk, already give a
//! graph whose neighbourhoods and communities join documents. The read model weighs each
//! co-occurrence by normalised PMI over the whole corpus; the extractor only says which pairs
//! share a chunk.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::document::{Entity, ExtractorInfo, Relation};

/// The kind of the relation the rules record: the two entities share a chunk.
pub const CO_OCCURS: &str = "co_occurs";

/// What an extractor found in one document's chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extraction {
    pub entities: Vec<Entity>,
    pub relations: Vec<Relation>,
}

/// The tenant's own vocabulary (brand names, keywords, competitors), found wherever it appears
/// whatever its case, and kept under the spelling the tenant gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gazetteer {
    /// (term, kind), e.g. ("Acme Skates", "brand").
    terms: Vec<(String, String)>,
}

impl Gazetteer {
    pub fn new(terms: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut seen = BTreeSet::new();
        let terms = terms
            .into_iter()
            .map(|(term, kind)| (term.trim().to_owned(), kind))
            .filter(|(term, _)| term.chars().count() >= 2 && seen.insert(term.to_lowercase()))
            .collect();
        Self { terms }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Finds entities and relations in a document's chunks (the port; models live in adapters).
pub trait EntityExtractor: Send + Sync + std::fmt::Debug {
    /// Recorded with every extraction, so a result says which extractor produced it.
    fn info(&self) -> ExtractorInfo;

    fn extract(&self, chunks: &[&str], gazetteer: &Gazetteer) -> Extraction;
}

/// The deterministic default: rules, no model.
///
/// - the gazetteer's terms, case-insensitively, as whole words (kind as the tenant's list says);
/// - `@handles` (kind `handle`) and `#hashtags` (kind `hashtag`), folded to lower case;
/// - domains such as `docs.python.org` (kind `domain`), without scheme, `www.` or path;
/// - capitalised names (kind `name`): runs of capitalised words, which may be joined by
///   particles (`Guido van Rossum`, `Bank of America`), and acronyms; a lone capitalised word
///   only where it does not open a sentence, and never a common sentence opener.
///
/// Spellings that differ only in case, a possessive `'s` or a plural `s` are one entity: named
/// by its most frequent spelling, the others kept as aliases. Every pair of entities sharing a
/// chunk is a `co_occurs` relation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleExtractor;

impl RuleExtractor {
    pub const NAME: &'static str = "plasma-rules";
    /// Raised whenever the rules change, so a re-extraction can be told apart.
    pub const VERSION: &'static str = "1";
}

/// Most entities one extraction records (the Document's own limit), the most frequent first.
const MAX_ENTITIES: usize = 1000;
/// Most relations one extraction records, the pairs sharing most chunks first.
const MAX_RELATIONS: usize = 5000;
/// Longest name kept, in characters (the Document refuses longer).
const MAX_NAME_CHARS: usize = 200;
/// Most words in a capitalised name: longer runs are headings or title case, not names.
const MAX_NAME_WORDS: usize = 5;

/// Lower-case words joining the parts of a name.
const PARTICLES: &[&str] = &[
    "van", "von", "der", "den", "de", "del", "della", "da", "di", "du", "la", "le", "of", "bin",
    "al",
];

/// Capitalised words that are not names on their own: sentence openers, pronouns, months'
/// neighbours in prose. Compared in lower case.
const NOT_NAMES: &[&str] = &[
    "a",
    "about",
    "after",
    "all",
    "also",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "before",
    "both",
    "but",
    "by",
    "can",
    "could",
    "do",
    "does",
    "each",
    "either",
    "even",
    "every",
    "for",
    "from",
    "had",
    "has",
    "have",
    "he",
    "her",
    "here",
    "his",
    "how",
    "however",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "just",
    "let",
    "many",
    "may",
    "more",
    "most",
    "much",
    "my",
    "neither",
    "no",
    "nor",
    "not",
    "note",
    "now",
    "of",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "she",
    "should",
    "since",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "though",
    "thus",
    "to",
    "too",
    "two",
    "under",
    "unless",
    "until",
    "up",
    "upon",
    "use",
    "using",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "why",
    "will",
    "with",
    "would",
    "yes",
    "yet",
    "you",
    "your",
    "see",
    "example",
    "otherwise",
    "first",
    "second",
    "finally",
    "instead",
    "still",
    "well",
    "there's",
    "it's",
    "don't",
    "you're",
    "we're",
];

/// Top-level domains recognised in bare domains; file extensions (`.py`, `.txt`) are not.
const TLDS: &[&str] = &[
    "com", "org", "net", "io", "ai", "dev", "edu", "gov", "co", "uk", "de", "fr", "nl", "eu",
    "info", "app", "me", "us", "ca", "au", "jp", "ch", "se", "no", "es", "it", "pl", "ru", "in",
    "br", "cn", "tech", "cloud", "news", "blog", "shop", "xyz",
];

/// One spelling found in one chunk.
#[derive(Debug)]
struct Mention {
    surface: String,
    kind: &'static str,
    chunk: usize,
}

impl EntityExtractor for RuleExtractor {
    fn info(&self) -> ExtractorInfo {
        ExtractorInfo {
            name: Self::NAME.to_owned(),
            version: Self::VERSION.to_owned(),
        }
    }

    fn extract(&self, chunks: &[&str], gazetteer: &Gazetteer) -> Extraction {
        let gazetteer_terms: Vec<(Vec<String>, &str, &str)> = gazetteer
            .terms
            .iter()
            .map(|(term, kind)| {
                let words = words_of(term).into_iter().map(|w| w.lower).collect();
                (words, term.as_str(), kind.as_str())
            })
            .collect();
        let mut mentions = Vec::new();
        let mut tenant_kinds: HashMap<String, (&str, &str)> = HashMap::new();
        let chunk_words: Vec<Vec<Word>> = chunks
            .iter()
            .map(|text| words_of(&mask_marked(text)))
            .collect();
        // Words seen opening a capitalised run where no sentence starts: names, wherever they
        // stand.
        let mut name_words: HashSet<String> = HashSet::new();
        for words in &chunk_words {
            for (j, word) in words.iter().enumerate() {
                let starts_run =
                    j == 0 || words[j - 1].break_after || !is_capitalised(&words[j - 1].text);
                if starts_run && !word.opens_sentence && is_capitalised(&word.text) {
                    name_words.insert(word.lower.clone());
                }
            }
        }
        for (chunk, (text, words)) in chunks.iter().zip(&chunk_words).enumerate() {
            find_marked(text, chunk, &mut mentions);
            for (term_words, term, kind) in &gazetteer_terms {
                if contains_words(words, term_words) {
                    tenant_kinds.insert(term.to_lowercase(), (term, kind));
                    mentions.push(Mention {
                        surface: (*term).to_owned(),
                        kind: "gazetteer",
                        chunk,
                    });
                }
            }
            find_names(words, &name_words, chunk, &mut mentions);
        }
        let entities = fold(mentions, &tenant_kinds);
        let relations = co_occurrences(&entities);
        Extraction {
            entities,
            relations,
        }
    }
}

/// A word of the text: letters, digits, inner `'`, `-`, `.` or `&` (`O'Brien`, `Jean-Luc`).
#[derive(Debug, Clone)]
struct Word {
    text: String,
    lower: String,
    /// It opens a sentence (the text's start, or after `.`, `!`, `?`, `:` or a blank line).
    opens_sentence: bool,
    /// Punctuation or a line break follows before the next word, which ends a name.
    break_after: bool,
}

fn words_of(text: &str) -> Vec<Word> {
    let mut words: Vec<Word> = Vec::new();
    let mut current = String::new();
    let mut opens_sentence = true;
    let mut pending_break = false;
    let mut newlines = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let inner = matches!(c, '\'' | '’' | '-' | '&' | '_')
            && !current.is_empty()
            && chars.peek().is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || inner {
            if current.is_empty() && pending_break {
                if let Some(last) = words.last_mut() {
                    last.break_after = true;
                }
            }
            current.push(if c == '’' { '\'' } else { c });
            continue;
        }
        if !current.is_empty() {
            let lower = current.to_lowercase();
            words.push(Word {
                text: std::mem::take(&mut current),
                lower,
                opens_sentence,
                break_after: false,
            });
            opens_sentence = false;
            pending_break = false;
            newlines = 0;
        }
        if c == '\n' {
            // A line break inside a paragraph is only wrapping ("Guido van\nRossum"); a blank
            // line ends the paragraph.
            newlines += 1;
            if newlines >= 2 {
                pending_break = true;
                opens_sentence = true;
            }
        } else if !c.is_whitespace() {
            // Any punctuation ends a name ("C:\\Users\\Name" is no name, nor "a/B").
            pending_break = true;
            // What follows these starts a sentence, or something like one: a quoted string,
            // a parenthesis, a list item, code.
            if matches!(
                c,
                '.' | '!' | '?' | ':' | '"' | '“' | '(' | '*' | '>' | '`' | '=' | '#'
            ) {
                opens_sentence = true;
            }
        }
    }
    if !current.is_empty() {
        let lower = current.to_lowercase();
        words.push(Word {
            text: current,
            lower,
            opens_sentence,
            break_after: true,
        });
    }
    words
}

/// Whether `needle` (lower-case words) occurs as consecutive words of `words`.
fn contains_words(words: &[Word], needle: &[String]) -> bool {
    !needle.is_empty()
        && words
            .windows(needle.len())
            .any(|window| window.iter().zip(needle).all(|(w, n)| &w.lower == n))
}

/// Starts with a capital, and is no two-letter scrap of code ("Sy", "Ro"): two-letter names
/// count only as acronyms ("EU").
fn is_capitalised(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase)
        && (word.chars().count() > 2 || word.chars().all(|c| !c.is_lowercase()))
}

fn is_acronym(word: &str) -> bool {
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    letters >= 2 && word.chars().all(|c| c.is_uppercase() || c.is_ascii_digit())
}

/// Whether `lower` (or its singular, without a possessive) was seen as a name.
fn is_name_word(name_words: &HashSet<String>, lower: &str) -> bool {
    let key = fold_key(lower);
    name_words.contains(lower)
        || name_words.contains(&key)
        || key
            .strip_suffix('s')
            .is_some_and(|s| name_words.contains(s))
}

/// Capitalised names in `words`.
fn find_names(words: &[Word], name_words: &HashSet<String>, chunk: usize, out: &mut Vec<Mention>) {
    let mut i = 0;
    while i < words.len() {
        if !is_capitalised(&words[i].text) {
            i += 1;
            continue;
        }
        // The run: capitalised words, and particles between two of them, unbroken.
        let mut end = i + 1;
        let mut last_capitalised = i;
        while end < words.len() && !words[end - 1].break_after {
            let word = &words[end];
            if is_capitalised(&word.text) {
                last_capitalised = end;
            } else if !PARTICLES.contains(&word.lower.as_str()) {
                break;
            }
            end += 1;
        }
        let mut start = i;
        let run_end = last_capitalised + 1;
        // A sentence's capitalised first word is no part of the name after it when it is a
        // common opener, or when the rest is known as a name and the word itself is not
        // ("Compare Widgets" where "Widget" appears mid-sentence elsewhere).
        let opener = &words[start];
        let drop_opener = opener.opens_sentence
            && start + 1 < run_end
            && (NOT_NAMES.contains(&opener.lower.as_str())
                || (!is_acronym(&opener.text)
                    && !name_words.contains(&opener.lower)
                    && is_name_word(name_words, &words[start + 1].lower)));
        if drop_opener {
            start += 1;
            while start < run_end && !is_capitalised(&words[start].text) {
                start += 1;
            }
        }
        let run = &words[start..run_end];
        let keep = match run {
            [] => false,
            [only] => {
                !NOT_NAMES.contains(&only.lower.as_str())
                    && (is_acronym(&only.text)
                        || !only.opens_sentence
                        || is_name_word(name_words, &only.lower))
                    && only.text.chars().count() >= 2
            }
            _ => run.len() <= MAX_NAME_WORDS,
        };
        if keep {
            let surface: Vec<&str> = run.iter().map(|w| w.text.as_str()).collect();
            out.push(Mention {
                surface: surface.join(" "),
                kind: "name",
                chunk,
            });
        }
        i = run_end.max(i + 1);
    }
}

/// `text` with its handles, hashtags, URLs and domains replaced by a comma, so their parts are
/// not read as names and no name runs across them.
fn mask_marked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        let bare = token.trim_start_matches(['(', '<', '"', '[']);
        let marked = bare.starts_with('@')
            || bare.starts_with('#')
            || bare.contains("://")
            || domain_of(bare.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', ']']))
                .is_some();
        if marked && !token.is_empty() {
            out.push_str(" , ");
            // Keep a sentence's end: "see acme.com. Then..." still ends there.
            if token.ends_with(['.', '!', '?']) {
                out.push('.');
            }
        } else {
            out.push_str(token);
        }
        let spaces = tail.len() - tail.trim_start().len();
        out.push_str(&tail[..spaces]);
        rest = &tail[spaces..];
    }
    out
}

/// `@handles`, `#hashtags` and domains.
fn find_marked(text: &str, chunk: usize, out: &mut Vec<Mention>) {
    for token in text.split(|c: char| {
        c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | '"' | ',' | '[' | ']')
    }) {
        let token = token.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'']);
        if let Some(rest) = token.strip_prefix('@') {
            let handle: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if (2..=30).contains(&handle.chars().count()) {
                out.push(Mention {
                    surface: format!("@{}", handle.to_lowercase()),
                    kind: "handle",
                    chunk,
                });
            }
        } else if let Some(rest) = token.strip_prefix('#') {
            let tag: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if tag.chars().next().is_some_and(char::is_alphabetic) && tag.chars().count() >= 2 {
                out.push(Mention {
                    surface: format!("#{}", tag.to_lowercase()),
                    kind: "hashtag",
                    chunk,
                });
            }
        } else if let Some(domain) = domain_of(token) {
            out.push(Mention {
                surface: domain,
                kind: "domain",
                chunk,
            });
        }
    }
}

/// The host of a URL or bare domain, lower case, without `www.`; `None` for anything else.
fn domain_of(token: &str) -> Option<String> {
    let rest = token
        .strip_prefix("https://")
        .or_else(|| token.strip_prefix("http://"))
        .unwrap_or(token);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.split(':').next()?;
    if host.contains('@') || !host.contains('.') {
        return None;
    }
    let host = host.to_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let labels: Vec<&str> = host.split('.').collect();
    let valid = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        })
        && labels.last().is_some_and(|tld| TLDS.contains(tld))
        && labels
            .first()
            .is_some_and(|first| first.chars().any(|c| c.is_ascii_alphabetic()));
    valid.then(|| host.to_owned())
}

/// The key spellings of one entity share: lower case, without a possessive.
fn fold_key(surface: &str) -> String {
    let lower = surface.to_lowercase();
    let lower = lower
        .strip_suffix("'s")
        .or_else(|| lower.strip_suffix("s'"))
        .map(str::to_owned)
        .unwrap_or(lower);
    lower
}

/// Groups mentions into entities: spellings by key, a plural key into its singular when both
/// occur; named by the most frequent spelling (the tenant's own for gazetteer terms).
fn fold(mentions: Vec<Mention>, tenant: &HashMap<String, (&str, &str)>) -> Vec<Entity> {
    struct Group {
        spellings: BTreeMap<String, usize>,
        kinds: BTreeMap<&'static str, usize>,
        chunks: BTreeSet<usize>,
        first_seen: usize,
    }
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (order, mention) in mentions.into_iter().enumerate() {
        let group = groups.entry(fold_key(&mention.surface)).or_insert(Group {
            spellings: BTreeMap::new(),
            kinds: BTreeMap::new(),
            chunks: BTreeSet::new(),
            first_seen: order,
        });
        *group.spellings.entry(mention.surface).or_default() += 1;
        *group.kinds.entry(mention.kind).or_default() += 1;
        group.chunks.insert(mention.chunk);
    }
    // Plurals into singulars: "Widgets" joins "Widget" when both were seen.
    let plurals: Vec<String> = groups
        .keys()
        .filter(|key| {
            key.len() > 3
                && key
                    .strip_suffix('s')
                    .is_some_and(|singular| groups.contains_key(singular))
        })
        .cloned()
        .collect();
    for plural in plurals {
        let singular = plural[..plural.len() - 1].to_owned();
        if let (Some(from), true) = (groups.remove(&plural), groups.contains_key(&singular)) {
            if let Some(into) = groups.get_mut(&singular) {
                for (spelling, n) in from.spellings {
                    *into.spellings.entry(spelling).or_default() += n;
                }
                for (kind, n) in from.kinds {
                    *into.kinds.entry(kind).or_default() += n;
                }
                into.chunks.extend(from.chunks);
                into.first_seen = into.first_seen.min(from.first_seen);
            }
        }
    }
    let mut entities: Vec<(usize, usize, Entity)> = groups
        .into_iter()
        .filter_map(|(key, group)| {
            let mentions: usize = group.spellings.values().sum();
            let (name, kind) = match tenant.get(&key) {
                Some((term, kind)) => ((*term).to_owned(), (*kind).to_owned()),
                None => {
                    // Most frequent spelling; ties to the one sorting first (stable).
                    let name = group
                        .spellings
                        .iter()
                        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                        .map(|(s, _)| s.clone())?;
                    let kind = group
                        .kinds
                        .iter()
                        .filter(|(k, _)| **k != "gazetteer")
                        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                        .map(|(k, _)| (*k).to_owned())?;
                    (name, kind)
                }
            };
            if name.chars().count() > MAX_NAME_CHARS {
                return None;
            }
            let aliases = group
                .spellings
                .keys()
                .filter(|s| **s != name && s.chars().count() <= MAX_NAME_CHARS)
                .take(20)
                .cloned()
                .collect();
            Some((
                mentions,
                group.first_seen,
                Entity {
                    name,
                    kind,
                    chunk_indexes: group.chunks.into_iter().collect(),
                    aliases,
                },
            ))
        })
        .collect();
    // Most mentioned first, then first seen, so a cap keeps what matters and output is stable.
    entities.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    entities.truncate(MAX_ENTITIES);
    // Two keys may still end on one name (the tenant's term spelled like another group).
    let mut names = BTreeSet::new();
    entities
        .into_iter()
        .map(|(_, _, entity)| entity)
        .filter(|entity| names.insert(entity.name.clone()))
        .collect()
}

/// Every pair of entities sharing a chunk, named in order; the pairs sharing most chunks first
/// when there are more than [`MAX_RELATIONS`].
fn co_occurrences(entities: &[Entity]) -> Vec<Relation> {
    let mut by_chunk: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, entity) in entities.iter().enumerate() {
        for &chunk in &entity.chunk_indexes {
            by_chunk.entry(chunk).or_default().push(i);
        }
    }
    let mut shared: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for members in by_chunk.values() {
        for (n, &a) in members.iter().enumerate() {
            for &b in &members[n + 1..] {
                *shared.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
    }
    let mut pairs: Vec<((usize, usize), usize)> = shared.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    pairs.truncate(MAX_RELATIONS);
    pairs
        .into_iter()
        .filter_map(|((a, b), _)| {
            let (a, b) = (&entities.get(a)?.name, &entities.get(b)?.name);
            let (from, to) = if a <= b { (a, b) } else { (b, a) };
            Some(Relation {
                from: from.clone(),
                to: to.clone(),
                kind: CO_OCCURS.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(chunks: &[&str]) -> Extraction {
        RuleExtractor.extract(chunks, &Gazetteer::default())
    }

    fn names(extraction: &Extraction) -> Vec<(&str, &str)> {
        let mut names: Vec<(&str, &str)> = extraction
            .entities
            .iter()
            .map(|e| (e.name.as_str(), e.kind.as_str()))
            .collect();
        names.sort_unstable();
        names
    }

    fn entity<'a>(extraction: &'a Extraction, name: &str) -> &'a Entity {
        extraction
            .entities
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no entity {name} in {:?}", names(extraction)))
    }

    #[test]
    fn given_prose_then_multi_word_names_are_found_with_their_particles() {
        let found = extract(&["Python was created by Guido van Rossum at CWI in Amsterdam."]);
        assert_eq!(
            names(&found),
            vec![
                ("Amsterdam", "name"),
                ("CWI", "name"),
                ("Guido van Rossum", "name"),
            ]
        );
    }

    #[test]
    fn given_a_sentence_opener_then_it_is_no_part_of_the_name() {
        let found = extract(&["When Bank of America reported. The results were good."]);
        assert_eq!(names(&found), vec![("Bank of America", "name")]);
    }

    #[test]
    fn given_a_lone_capitalised_word_opening_a_sentence_then_it_is_not_a_name() {
        let found = extract(&["Skates are fun. Everyone likes Rollerblade skates."]);
        assert_eq!(names(&found), vec![("Rollerblade", "name")]);
    }

    #[test]
    fn given_acronyms_then_they_are_names_even_opening_a_sentence() {
        let found = extract(&["IDLE ships with Python. I use it."]);
        assert_eq!(names(&found), vec![("IDLE", "name"), ("Python", "name")]);
    }

    #[test]
    fn given_handles_hashtags_and_domains_then_each_has_its_kind() {
        let found = extract(&[
            "Ask @AcmeSkates on #Skating2026 or read https://www.Acme.com/blog and docs.python.org. \
             Files like setup.py are not domains; neither is e.g. this.",
        ]);
        assert_eq!(
            names(&found),
            vec![
                ("#skating2026", "hashtag"),
                ("@acmeskates", "handle"),
                ("acme.com", "domain"),
                ("docs.python.org", "domain"),
            ]
        );
    }

    #[test]
    fn given_case_possessive_and_plural_variants_then_they_are_one_entity_with_aliases() {
        let found = extract(&[
            "We asked Widget and Widget's makers.",
            "Compare Widgets with WIDGET and Widget.",
        ]);
        let widget = entity(&found, "Widget");
        assert_eq!(widget.chunk_indexes, vec![0, 1]);
        assert_eq!(widget.aliases, vec!["WIDGET", "Widget's", "Widgets"]);
        assert_eq!(found.entities.len(), 1);
    }

    #[test]
    fn given_the_tenants_terms_then_they_are_found_in_any_case_under_the_tenants_spelling() {
        let gazetteer = Gazetteer::new([
            ("Acme Skates".to_owned(), "brand".to_owned()),
            ("inline skates".to_owned(), "keyword".to_owned()),
            ("Rollerblade".to_owned(), "competitor".to_owned()),
        ]);
        let found = RuleExtractor.extract(
            &["ACME SKATES beat Rollerblade at inline skates, said Jane Doe."],
            &gazetteer,
        );
        assert_eq!(entity(&found, "Acme Skates").kind, "brand");
        assert_eq!(entity(&found, "inline skates").kind, "keyword");
        assert_eq!(entity(&found, "Rollerblade").kind, "competitor");
        assert_eq!(entity(&found, "Jane Doe").kind, "name");
    }

    #[test]
    fn given_entities_sharing_chunks_then_each_pair_is_one_co_occurrence() {
        let found = extract(&[
            "The Jython project runs on the JVM, like Clojure.",
            "Then Jython and Clojure again.",
            "Only Clojure here, with Leiningen.",
        ]);
        let mut pairs: Vec<(&str, &str)> = found
            .relations
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str()))
            .collect();
        pairs.sort_unstable();
        assert_eq!(
            pairs,
            vec![
                ("Clojure", "JVM"),
                ("Clojure", "Jython"),
                ("Clojure", "Leiningen"),
                ("JVM", "Jython"),
            ]
        );
        assert!(found.relations.iter().all(|r| r.kind == CO_OCCURS));
    }

    #[test]
    fn given_hard_wrapped_text_then_names_run_across_lines_and_paragraphs_end_them() {
        let found = extract(&["Written by Guido van\nRossum at CWI.\n\nSmalltalk inspired it."]);
        assert_eq!(
            names(&found),
            vec![("CWI", "name"), ("Guido van Rossum", "name")]
        );
    }

    #[test]
    fn given_a_name_opening_a_sentence_then_it_stays_whole() {
        let found = extract(&["Ada Lovelace met Charles Babbage in London."]);
        assert_eq!(
            names(&found),
            vec![
                ("Ada Lovelace", "name"),
                ("Charles Babbage", "name"),
                ("London", "name"),
            ]
        );
    }

    #[test]
    fn given_the_same_chunks_then_the_extraction_is_the_same() {
        let chunks = [
            "Ada Lovelace met Charles Babbage in London.",
            "London again.",
        ];
        assert_eq!(extract(&chunks), extract(&chunks));
    }

    #[test]
    fn given_odd_text_then_nothing_panics() {
        for text in [
            "",
            "@",
            "#",
            "#1",
            "http://",
            "'s",
            "A",
            "...",
            "É é Ééé",
            "-x- 's'",
        ] {
            let _ = extract(&[text]);
        }
    }
}
