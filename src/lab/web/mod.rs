//! The lab's web room: the status page a person watches, gathered as a view model ([`view`])
//! and rendered by templates ([`page`], its style and script in `page.css` and `page.js`,
//! included at build time), and the routes that serve it beside the supervisor's JSON and the
//! tracker's ([`router`]).

pub mod page;
pub mod router;
pub mod view;

pub use router::router;
