// The data channel's sealed records (ODC3) on their own: what a record is, what opens and what
// does not, and when keys change. The socket side is in tests/integration/sealed_socket_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "offload/tunnel/sealed_records.h"

namespace offload::tunnel {
namespace {

// A key source as the TLS exporter would be: a different secret for each (label, epoch); it
// remembers which epochs were asked for.
struct Keys {
  char label = 'c';
  std::vector<std::uint64_t> asked;
  SealingKeys source() {
    return [this](std::uint64_t epoch, SealingSecret& out) {
      asked.push_back(epoch);
      for (std::size_t i = 0; i < out.key.size(); ++i)
        out.key[i] = static_cast<std::uint8_t>(label * 31 + epoch * 7 + i);
      for (std::size_t i = 0; i < out.iv.size(); ++i)
        out.iv[i] = static_cast<std::uint8_t>(label + epoch + 3 * i);
      return true;
    };
  }
};

std::string bytes(std::size_t n, char seed = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 13 + i / 251);
  return s;
}

std::string seal(RecordCipher& sealer, const std::string& plaintext) {
  std::string record(kSealedHeaderBytes + plaintext.size() + kSealedTagBytes, '\0');
  EXPECT_FALSE(sealer.seal(plaintext, record.data()));
  return record;
}

boost::system::error_code open(RecordCipher& opener, const std::string& record,
                               std::string& plaintext) {
  plaintext.assign(record.size() - kSealedHeaderBytes - kSealedTagBytes, '\0');
  return opener.open(record, plaintext.data());
}

TEST(SealedRecords, EverySizeUpToTheLargestOpensToWhatWasSealed) {
  Keys keys;
  RecordCipher sealer(keys.source()), opener(keys.source());
  for (std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17},
                        std::size_t{4096}, kMaxSealedPlaintext - 1, kMaxSealedPlaintext}) {
    const std::string plaintext = bytes(n, static_cast<char>(n));
    const std::string record = seal(sealer, plaintext);
    ASSERT_EQ(record.size(), 4 + n + 16);
    // The header is the plaintext's length, big-endian; the body is not the plaintext.
    std::size_t length = 0;
    ASSERT_FALSE(RecordCipher::parse_length(record.data(), length));
    EXPECT_EQ(length, n);
    EXPECT_NE(record.substr(4, n), plaintext);
    std::string opened;
    ASSERT_FALSE(open(opener, record, opened)) << n;
    EXPECT_EQ(opened, plaintext) << n;
  }
}

TEST(SealedRecords, ARecordOpensInPlace) {
  Keys keys;
  RecordCipher sealer(keys.source()), opener(keys.source());
  const std::string plaintext = bytes(3000, 'p');
  std::string record = seal(sealer, plaintext);
  char* body = record.data() + kSealedHeaderBytes;
  ASSERT_FALSE(opener.open(record, body));
  EXPECT_EQ(std::string(body, plaintext.size()), plaintext);
}

TEST(SealedRecords, TheSameBytesSealDifferentlyEachTime) {
  Keys keys;
  RecordCipher sealer(keys.source()), opener(keys.source());
  const std::string plaintext = bytes(64, 'x');
  const std::string first = seal(sealer, plaintext), second = seal(sealer, plaintext);
  EXPECT_NE(first, second);  // the nonce moved on
  std::string opened;
  ASSERT_FALSE(open(opener, first, opened));
  ASSERT_FALSE(open(opener, second, opened));
  EXPECT_EQ(opened, plaintext);
}

TEST(SealedRecords, AChangedBitAnywhereDoesNotOpen) {
  Keys keys;
  RecordCipher sealer(keys.source());
  const std::string record = seal(sealer, bytes(40, 'b'));
  // Every bit of the body and the tag, and the length's low bits (the AAD): a fresh opener
  // each time, at the same sequence number as the sealer's record.
  for (std::size_t at = 3; at < record.size(); ++at) {
    for (int bit = 0; bit < 8; bit += 3) {
      std::string changed = record;
      changed[at] = static_cast<char>(changed[at] ^ (1 << bit));
      RecordCipher opener(keys.source());
      std::string opened(64, '\0');
      EXPECT_TRUE(opener.open(changed, opened.data())) << "byte " << at << " bit " << bit;
    }
  }
}

TEST(SealedRecords, AReplayedOrReorderedRecordDoesNotOpen) {
  Keys keys;
  RecordCipher sealer(keys.source());
  const std::string one = seal(sealer, bytes(100, '1')), two = seal(sealer, bytes(100, '2'));
  std::string opened;
  {
    RecordCipher opener(keys.source());
    EXPECT_EQ(open(opener, two, opened), make_error_code(SealedRecordError::forged));
  }
  {
    RecordCipher opener(keys.source());
    ASSERT_FALSE(open(opener, one, opened));
    EXPECT_EQ(open(opener, one, opened), make_error_code(SealedRecordError::forged));
  }
}

TEST(SealedRecords, ARecordOfTheOtherDirectionDoesNotOpen) {
  Keys client, runner{'r'};
  RecordCipher client_sends(client.source()), client_opens(runner.source());
  std::string opened;
  EXPECT_EQ(open(client_opens, seal(client_sends, bytes(10)), opened),
            make_error_code(SealedRecordError::forged));
}

TEST(SealedRecords, LengthsNoSenderWritesAreRefusedFromTheHeaderAlone) {
  std::size_t length = 0;
  EXPECT_EQ(RecordCipher::parse_length("\0\0\0\0", length),
            make_error_code(SealedRecordError::empty_record));
  EXPECT_EQ(RecordCipher::parse_length("\0\x01\0\x01", length),
            make_error_code(SealedRecordError::too_long));
  EXPECT_EQ(RecordCipher::parse_length("\xff\xff\xff\xff", length),
            make_error_code(SealedRecordError::too_long));
  EXPECT_FALSE(RecordCipher::parse_length("\0\x01\0\0", length));
  EXPECT_EQ(length, kMaxSealedPlaintext);

  Keys keys;
  RecordCipher sealer(keys.source());
  char out[kSealedHeaderBytes + kSealedTagBytes];
  EXPECT_EQ(sealer.seal({}, out), make_error_code(SealedRecordError::empty_record));
  std::string record(kMaxSealedRecord + 1, '\0');
  EXPECT_EQ(sealer.seal({record.data(), kMaxSealedPlaintext + 1}, record.data()),
            make_error_code(SealedRecordError::too_long));
  // A record whose size is not what its header says.
  RecordCipher opener(keys.source());
  std::string good = seal(sealer, bytes(8));
  std::string opened(16, '\0');
  EXPECT_EQ(opener.open({good.data(), good.size() - 1}, opened.data()),
            make_error_code(SealedRecordError::forged));
  EXPECT_EQ(opener.open({good.data(), 3}, opened.data()),
            make_error_code(SealedRecordError::forged));
}

TEST(SealedRecords, KeysChangeAfterSoManyRecordsOnBothSidesAlike) {
  Keys keys;
  const SealingLimits limits{.frames_per_key = 3, .bytes_per_key = 1 << 20};
  RecordCipher sealer(keys.source(), limits), opener(keys.source(), limits);
  std::vector<std::string> records;
  for (int i = 0; i < 10; ++i) records.push_back(seal(sealer, bytes(20, static_cast<char>(i))));
  EXPECT_EQ(sealer.epoch(), 3u);  // records 0-2, 3-5, 6-8, 9
  std::string opened;
  for (int i = 0; i < 10; ++i) {
    ASSERT_FALSE(open(opener, records[i], opened)) << i;
    EXPECT_EQ(opened, bytes(20, static_cast<char>(i)));
  }
  EXPECT_EQ(opener.epoch(), 3u);
  // Each side asked for epochs 0 to 3, each once.
  std::vector<std::uint64_t> sorted = keys.asked;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::uint64_t>{0, 0, 1, 1, 2, 2, 3, 3}));

  // The key really changes: an opener that keeps one key fails at the first record past it.
  RecordCipher one_key(keys.source(), SealingLimits{.frames_per_key = 100});
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(open(one_key, records[i], opened));
  EXPECT_EQ(open(one_key, records[3], opened), make_error_code(SealedRecordError::forged));
}

TEST(SealedRecords, KeysChangeBeforeARecordThatWouldPassTheByteLimit) {
  Keys keys;
  const SealingLimits limits{.frames_per_key = 1000, .bytes_per_key = 100};
  RecordCipher sealer(keys.source(), limits), opener(keys.source(), limits);
  std::string opened;
  ASSERT_FALSE(open(opener, seal(sealer, bytes(60)), opened));
  EXPECT_EQ(sealer.epoch(), 0u);
  ASSERT_FALSE(open(opener, seal(sealer, bytes(40)), opened));  // 100: still within
  EXPECT_EQ(sealer.epoch(), 0u);
  ASSERT_FALSE(open(opener, seal(sealer, bytes(1)), opened));  // 101: a new key first
  EXPECT_EQ(sealer.epoch(), 1u);
  // A record larger than the limit on its own still goes, under a key of its own.
  ASSERT_FALSE(open(opener, seal(sealer, bytes(500)), opened));
  EXPECT_EQ(sealer.epoch(), 2u);
  ASSERT_FALSE(open(opener, seal(sealer, bytes(1)), opened));
  EXPECT_EQ(sealer.epoch(), 3u);
  EXPECT_EQ(opener.epoch(), 3u);
}

TEST(SealedRecords, NoKeyForAnEpochEndsSealingAndOpening) {
  int calls = 0;
  SealingKeys first_only = [&calls](std::uint64_t epoch, SealingSecret& out) {
    ++calls;
    out.key.fill(1);
    out.iv.fill(2);
    return epoch == 0;
  };
  const SealingLimits limits{.frames_per_key = 1};
  RecordCipher sealer(first_only, limits);
  const std::string record = seal(sealer, bytes(5));
  std::string out(kSealedHeaderBytes + 5 + kSealedTagBytes, '\0');
  EXPECT_EQ(sealer.seal(bytes(5), out.data()), make_error_code(SealedRecordError::no_key));
  RecordCipher none(SealingKeys{});
  std::string opened;
  EXPECT_EQ(open(none, record, opened), make_error_code(SealedRecordError::no_key));
}

}  // namespace
}  // namespace offload::tunnel
