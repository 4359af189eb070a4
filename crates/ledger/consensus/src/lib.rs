//! TrustEdge BFT consensus on Malachite (being written).
