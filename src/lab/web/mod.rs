//! The lab's web room: the status page a person watches (`page`) and the routes that serve it
//! and the supervisor's JSON beside the tracker's.

pub mod page;
