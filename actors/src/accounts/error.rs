//! The accounts subsystem's one error (accounts and their tokens).

crate::subsystem_error!(
    /// Why an accounts or tokens request failed.
    AccountsError {}
);
