//! Files (`/v1/files`): the streaming multipart reader of uploads and the chunked AES-256-GCM
//! format their contents are stored in.

pub mod multipart;
pub mod sealed;
