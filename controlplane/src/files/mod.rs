//! Files (`/v1/files`): the streaming multipart reader of uploads and the chunked AES-256-GCM
//! format their contents are stored in; the blob store, the files service, its HTTP
//! handlers on the internal listener and the admin operations.

pub mod multipart;
pub mod sealed;

pub mod admin;
pub mod http;
pub mod service;
pub mod store;
