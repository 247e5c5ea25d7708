//! Which end of a connection an endpoint is.

/// The role of an endpoint: a client masks the frames it sends, a server does not; and the
/// transport is torn down in a different order (Beast's `role_type`).
///
/// ```
/// use rbeast::Role;
/// assert_ne!(Role::Client, Role::Server);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The endpoint that sent the upgrade request.
    Client,
    /// The endpoint that accepted the upgrade request.
    Server,
}
