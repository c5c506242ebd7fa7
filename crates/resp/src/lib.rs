//! RESP2/RESP3: decoding client requests, encoding replies, and a general frame type.
//!
//! This crate does no I/O. The server feeds bytes it read into a [`RequestDecoder`] and gets
//! whole commands back; commands write their replies into a [`ReplyBuf`], which encodes them
//! for the protocol version the connection negotiated. [`Frame`] is the general value type
//! used by clients, tests and log readers that must understand any RESP reply.
//!
//! Every length read from the wire is checked against [`Limits`] before anything is sized by it.

mod error;
mod frame;
mod limits;
mod number;
mod reply;
mod request;

pub use error::{FrameError, ProtocolError};
pub use frame::Frame;
pub use limits::Limits;
pub use number::{format_double, format_double_human, parse_f64, parse_i64};
pub use reply::{Protocol, REPLY_MAX_BYTES, ReplyBuf};
pub use request::{RequestDecoder, split_inline_args};
