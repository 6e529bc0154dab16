//! bugbot's test support: the sandbox (local stand-ins of the outside services), the launcher of the
//! local stack, and helpers that sign requests the way Discord and GitHub do.

pub mod fixtures;
pub mod localenv;
pub mod sandbox;
pub mod signing;
pub mod stack;
