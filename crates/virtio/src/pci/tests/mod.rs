//! Tests of the transport, by subject.
