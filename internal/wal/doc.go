// Package wal is the on-disk framing both of chainraft's stores use: the
// write-ahead-log records of chain and raftkv, and the checksummed,
// atomically replaced files that hold their snapshots and metadata. It
// knows nothing of entries or hard states; each store encodes its own
// record bodies. It has no goroutines; a [Log] is used by one goroutine.
//
// # Formats
//
// A log file starts with a 32-byte header: the magic "CHAINRAFT-LOG 1\n"
// (format 1), a random 8-byte file id, 4 reserved bytes and the CRC-32C of
// the first 28. Records follow, each
//
//	[u32 body length][u32 CRC-32C of body][u32 header CRC][body]
//
// where the header CRC is the CRC-32C of (file id, the record's u64 file
// offset, the first 8 header bytes). A log that is finished for good (a
// chain segment before the next is started) ends with a seal: a record
// with an empty body whose header CRC continues from the file id with the
// bytes "seal" before the offset, so it is never read as a record, nor a
// record as it. All integers are little-endian.
//
// A checksummed file (a snapshot, a vote) is a 32-byte header — the magic
// "CHAINRAFT-DAT 1\n", the u64 body length, the body's CRC-32C, the CRC-32C
// of the first 28 bytes — and the body.
//
// Format 1 replaced the stores' own copies of this framing ([len][CRC]
// records, bare or length-prefixed snapshots). Nothing reads the old
// format: there were no users' data to migrate, and an old file is refused
// by its missing magic ("not a chainraft log of format 1"), never read as
// an empty or torn one. Delete old data directories.
//
// # Why a record header has its own checksum
//
// A length field is never trusted before it is verified: a flipped bit in
// a length cannot make the reader skip, or swallow, the records after it,
// and never sizes an allocation (the reader slices a file already in
// memory). It also makes "is there a valid record at offset q?" cost a
// fixed 24 bytes of CRC, so scanning every offset of a damaged file is
// linear. The file id and the offset in the header CRC make a record valid
// only where it was written: a copy of one inside another record's body, or
// a stale block of another file that a crash exposes, does not validate.
//
// # Torn or damaged: the rule
//
// Reading a log stops at the first bad record (at offset p). Then:
//
//   - if a valid record starts anywhere after p, the log is refused
//     ([CorruptError] naming the file, p, and the valid record's offset);
//   - else, if the file is the one being appended to, the tail from p is a
//     torn write: [Open] cuts it and syncs the cut;
//   - else (a sealed log: synced whole, seal last, before a newer one was
//     created) it is refused.
//
// A sealed log must end with its seal, and nothing may follow the seal.
// Without the seal, a segment cut exactly at a record boundary would read
// as a valid shorter log, and the records cut off — synced, with the next
// segment's records after them — would be lost silently. The seal is
// synced before the next log is created, so a sealed log can never have a
// torn tail; a last log found sealed is a crash between the two.
//
// Why this never drops a synced record that has valid data after it, and
// keeps every synced record before the damage: a store acknowledges
// nothing before fdatasync returns, and a log is append-only, so a crash
// can only damage bytes written after the last completed fdatasync — the
// unsynced tail. If the damage at p were such a tear, nothing after p was
// synced either (a sync covers every earlier write). A valid record after p
// therefore means one of two things: it was synced, and so was p, and the
// damage destroyed durable state; or it is an unsynced write the disk
// happened to persist ahead of an earlier page. A sync leaves no mark in
// the file, so no rule that reads only the bytes can tell these apart, and
// the rule refuses both. When nothing valid follows p, cutting at p loses
// only bytes that hold no valid record; every record before p is kept
// exactly. If the damage was in fact a bit flip in the last synced
// record(s), those records are lost — but a torn write of them produces the
// same bytes, so nothing could tell them apart either, and no valid record
// followed them.
//
// The price is a false refusal after a crash that persisted a later page
// of an unsynced write but not an earlier one: the store will not start
// until an operator cuts the file at the named offset. A chance match of
// the checksums in garbage (at most about 2^-32 per offset scanned) also
// errs towards refusal, never towards loss.
//
// A log file is created whole by [Replace] (temporary file with the header
// and any records, fsync, rename, directory fsync), so a bad header is
// never a torn creation and is always refused: taking it for an empty log
// would silently drop the whole file. A checksummed file is likewise only
// ever replaced by rename of a synced temporary file, so it has no torn
// state: any damage, truncation included, is refused.
package wal
