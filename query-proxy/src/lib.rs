//! Berth's permission-filtering MySQL proxy. So far this crate holds only its policy layer,
//! [`policy`]: a pure MariaDB-aware lexer and classifier and the one decision function,
//! [`policy::check`], that the protocol server will call for every statement an app sends.

pub mod policy;
