//! Negotiation tables.
