//! Client dialects other than OpenAI's, translated at the edge of the request flow.

pub mod anthropic;
