//! The city simulation driven through the real stack: `trustedge simulate` and the demo.

pub mod feed;
