//! The Internet checksum (RFC 1071), one copy for every header the daemon
//! builds or checks in user space (VRRP adverts, tickles) and for the test
//! bed's frames. The XDP program keeps its own: the verifier wants its
//! loops bounded over packet memory, which this one is not written for.

/// The one's-complement sum of `data` as 16-bit big-endian words (an odd
/// last byte padded with zero), continuing from the partial sum `acc`.
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = it.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

/// Folds a partial sum into the checksum field's value.
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` continuing from `acc`: 0 over data that holds a
/// correct checksum.
pub fn checksum(acc: u32, data: &[u8]) -> u16 {
    fold(sum(acc, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_odd_lengths() {
        // RFC 1071 section 3's example: the sum of these words is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), !0xddf2);
        // An odd byte counts as the high half of a last word.
        assert_eq!(sum(0, &[0xab]), 0xab00);
        // Splitting the data at an even offset changes nothing.
        assert_eq!(sum(sum(0, &data[..4]), &data[4..]), sum(0, &data));
        // A header holding its checksum verifies to zero.
        let mut h = [
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(0, &h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(0, &h), 0);
    }
}
