//! The tree decoder reads files from the store, which may be damaged or hostile.
//! Errors are fine; panics are bugs. Whatever decodes must be canonical: encoding it again gives
//! back exactly the input, and decoding that gives the same tree.
#![no_main]

use envstore_tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        let encoded = tree.encode();
        assert_eq!(encoded, data, "accepted a non-canonical encoding");
        assert_eq!(Tree::decode(&encoded).as_ref(), Ok(&tree));
        assert_eq!(tree.id(), envstore_tree::TreeId::from(blake3::hash(data)));
    }
});
