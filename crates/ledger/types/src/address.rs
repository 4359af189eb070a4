//! Addresses: 20 bytes derived from a public key, shown in bech32 with the prefix `te`.
//!
//! Members (people and services of organisations) and devices derive their addresses under
//! different domain tags. A device's ledger address is therefore a pseudonym: it is not the
//! member address of the same key, and it carries nothing about who wears or carries it.

use std::fmt;

use bech32::{Bech32, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{Hash, domain};
use crate::{PublicKey, TypesError};

/// The human-readable prefix of every TrustEdge address.
pub const ADDRESS_HRP: &str = "te";

/// A 20-byte account address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 20]);

impl Address {
    fn derive(tag: &[u8], key: &PublicKey) -> Address {
        let h = Hash::tagged(tag, &[&key.0]);
        let mut a = [0u8; 20];
        a.copy_from_slice(&h.0[..20]);
        Address(a)
    }

    /// The address of a member key (a person or service acting for an organisation, or a
    /// validator).
    pub fn of_member(key: &PublicKey) -> Address {
        Address::derive(domain::MEMBER_ADDRESS, key)
    }

    /// The pseudonymous ledger address of a device key.
    pub fn of_device(key: &PublicKey) -> Address {
        Address::derive(domain::DEVICE_ADDRESS, key)
    }

    /// Parses the bech32 form `te1…`.
    pub fn parse(s: &str) -> Result<Address, TypesError> {
        let (hrp, data) =
            bech32::decode(s.trim()).map_err(|e| TypesError::InvalidAddress(e.to_string()))?;
        if hrp.as_str() != ADDRESS_HRP {
            return Err(TypesError::InvalidAddress(format!(
                "prefix is {hrp:?}, expected {ADDRESS_HRP:?}"
            )));
        }
        let bytes: [u8; 20] = data.try_into().map_err(|d: Vec<u8>| {
            TypesError::InvalidAddress(format!("expected 20 bytes, got {}", d.len()))
        })?;
        Ok(Address(bytes))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        match bech32::encode::<Bech32>(hrp, &self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "te:{}", hex::encode(self.0)),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl std::str::FromStr for Address {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    #[test]
    fn round_trip_and_prefix() {
        let k = Keypair::from_seed([3; 32]).public();
        let a = Address::of_member(&k);
        let s = a.to_string();
        assert!(s.starts_with("te1"), "{s}");
        assert_eq!(Address::parse(&s).unwrap(), a);
        assert_ne!(
            Address::of_device(&k),
            a,
            "device pseudonym must differ from member address"
        );
    }

    #[test]
    fn rejects_bad_checksum_and_prefix() {
        let a = Address::of_member(&Keypair::from_seed([3; 32]).public()).to_string();
        let mut chars: Vec<char> = a.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'q' { 'p' } else { 'q' };
        let tampered: String = chars.into_iter().collect();
        assert!(Address::parse(&tampered).is_err());
        let other = bech32::encode::<Bech32>(Hrp::parse("xx").unwrap(), &[0u8; 20]).unwrap();
        assert!(Address::parse(&other).is_err());
    }
}
