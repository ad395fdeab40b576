//! The lab's commands, one file each: `testbed start | stop | status | run`, the counterpart of
//! `run_all_vod.sh start [my-client] | stop`.

pub mod run;
pub mod start;
pub mod status;
pub mod stop;

pub use run::run;
pub use start::start;
pub use status::status;
pub use stop::stop;
