//! `Verified<T>`: proof, in the type system, that a value passed verification.
//!
//! Only this crate's verifiers construct a `Verified<T>` (the constructor is crate-private),
//! so code downstream of verification that takes a `Verified<T>` cannot be handed an
//! unchecked value by mistake.

use std::fmt;
use std::ops::Deref;

/// A type that has a verifier in this crate. `Facts` is what verification established
/// (decoded payloads, the certificate chain, …).
pub trait Verifiable {
    /// What verification established about a value of this type.
    type Facts: fmt::Debug + Clone;
}

/// A value that passed its verifier, with the facts the verifier established.
#[derive(Clone)]
pub struct Verified<T: Verifiable> {
    value: T,
    facts: T::Facts,
}

impl<T: Verifiable> Verified<T> {
    pub(crate) fn new(value: T, facts: T::Facts) -> Self {
        Self { value, facts }
    }

    /// The verified value (the wire form, e.g. to forward it untouched).
    pub fn value(&self) -> &T {
        &self.value
    }

    /// What verification established.
    pub fn facts(&self) -> &T::Facts {
        &self.facts
    }
}

impl<T: Verifiable> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Verifiable + fmt::Debug> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified").field("value", &self.value).field("facts", &self.facts).finish()
    }
}
