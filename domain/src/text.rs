//! Small validation helpers shared by the contexts: bounded, trimmed, non-empty text.

/// Why a piece of text was refused. `field` names the command field, for error reporting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("`{field}` is too long: {len} characters, at most {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// NUL cannot be stored in PostgreSQL text, so a read model could never hold it.
    #[error("`{field}` must not contain NUL characters")]
    NulCharacter { field: &'static str },
    #[error("`{field}` has too many entries: {len}, at most {max}")]
    TooMany {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl TextError {
    /// The command field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Empty { field }
            | Self::TooLong { field, .. }
            | Self::NulCharacter { field }
            | Self::TooMany { field, .. } => field,
        }
    }
}

/// Trims `value` and checks it is non-empty and at most `max` characters.
pub fn required(field: &'static str, value: &str, max: usize) -> Result<String, TextError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty { field });
    }
    bounded(field, trimmed, max)
}

/// Checks `value` is at most `max` characters (it may be empty).
pub fn bounded(field: &'static str, value: &str, max: usize) -> Result<String, TextError> {
    let len = value.chars().count();
    if len > max {
        return Err(TextError::TooLong { field, len, max });
    }
    if value.contains('\0') {
        return Err(TextError::NulCharacter { field });
    }
    Ok(value.to_owned())
}

/// Normalises a list of terms (keywords, competitor names): trimmed, non-empty, deduplicated
/// case-insensitively, order kept, at most `max_items` of at most `max_len` characters each.
pub fn term_list(
    field: &'static str,
    values: &[String],
    max_items: usize,
    max_len: usize,
) -> Result<Vec<String>, TextError> {
    if values.len() > max_items {
        return Err(TextError::TooMany {
            field,
            len: values.len(),
            max: max_items,
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let term = required(field, value, max_len)?;
        if seen.insert(term.to_lowercase()) {
            out.push(term);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_trimmed_and_deduplicated_ignoring_case() {
        let got = term_list(
            "keywords",
            &[" Acme ".into(), "acme".into(), "Rocket".into()],
            10,
            20,
        );
        assert_eq!(got, Ok(vec!["Acme".to_owned(), "Rocket".to_owned()]));
    }

    #[test]
    fn a_blank_term_names_its_field() {
        let err = term_list("competitors", &["  ".into()], 10, 20).unwrap_err();
        assert_eq!(err.field(), "competitors");
    }

    #[test]
    fn a_nul_character_is_refused_naming_the_field() {
        assert_eq!(
            required("text", "a\0b", 10),
            Err(TextError::NulCharacter { field: "text" })
        );
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        assert!(required("name", "ééé", 3).is_ok());
        assert!(required("name", "éééé", 3).is_err());
    }
}
