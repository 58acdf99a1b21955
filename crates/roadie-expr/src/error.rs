//! The one error type of the crate.

/// What went wrong while evaluating one of Argo's little languages.
///
/// Every variant names the text it is about (the expression, the variable, the duration) so a
/// message shown to a user points at the part of their workflow to fix.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum ExprError {
    /// A `{{name}}` whose name the scope does not know.
    #[error("failed to resolve {{{{{name}}}}}")]
    Unresolved { name: String },
    /// The text is not a valid expression of its language.
    #[error("invalid expression '{expr}': {message}")]
    Syntax { expr: String, message: String },
    /// The expression parsed but evaluating it failed (wrong types, unknown function, ...).
    #[error("failed to evaluate expression '{expr}': {message}")]
    Eval { expr: String, message: String },
    /// A `withSequence` that cannot be expanded.
    #[error("invalid withSequence: {message}")]
    Sequence { message: String },
    /// A `withParam` value that is not a JSON list.
    #[error("invalid withParam value '{text}': {message}")]
    Items { text: String, message: String },
    /// A duration that is neither a number of seconds nor a Go duration.
    #[error("invalid duration '{text}': {message}")]
    Duration { text: String, message: String },
}

impl ExprError {
    pub(crate) fn syntax(expr: &str, message: impl Into<String>) -> Self {
        ExprError::Syntax {
            expr: expr.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn eval(expr: &str, message: impl Into<String>) -> Self {
        ExprError::Eval {
            expr: expr.to_string(),
            message: message.into(),
        }
    }
}
