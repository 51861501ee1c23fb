// The join string: what `offload-runner accounts add` prints and `docker offload accounts add`
// reads.
#include "offload/common/join_string.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace offload;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

namespace {

const std::string kFingerprint = "sha256:" + std::string(64, 'a');
const std::string kToken = "0123456789abcdef0123456789abcdef";

JoinInfo sample() { return {"runner.example.com:7443", kFingerprint, kToken}; }

std::string error_of(std::string_view text) {
  try {
    parse_join_string(text);
  } catch (const JoinStringError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(JoinString, RoundTripsAndIsOneVersionedWordWithoutBlanks) {
  for (const JoinInfo& info :
       {sample(), JoinInfo{"[fd00::1]:1", kFingerprint, std::string(512, 'x')},
        JoinInfo{"10.0.0.1:65535", kFingerprint, "!#$%&()*+,-./:;<=>?@[]^_`{|}~0123"}}) {
    const std::string line = format_join_string(info);
    EXPECT_THAT(line, StartsWith("offload1."));
    EXPECT_EQ(line.find_first_of(" \t\r\n'\"\\"), std::string::npos) << line;
    const JoinInfo back = parse_join_string(line);
    EXPECT_EQ(back.address, info.address);
    EXPECT_EQ(back.fingerprint, info.fingerprint);
    EXPECT_EQ(back.token, info.token);
    // Pasted with the terminal's line end and indentation.
    EXPECT_EQ(parse_join_string("  " + line + "\r\n").token, info.token);
  }
}

TEST(JoinString, TheFormatIsCompactJsonInBase64Url) {
  std::string json;
  const std::string line = format_join_string(sample());
  ASSERT_TRUE(base64url_decode(line.substr(9), json));
  EXPECT_EQ(json, R"({"a":"runner.example.com:7443","f":")" + kFingerprint + R"(","t":")" + kToken +
                      R"("})");
}

TEST(JoinString, MalformedInputsSayWhatIsWrongAndNeverShowTheToken) {
  const std::string good = format_join_string(sample());
  const std::string payload = good.substr(9);
  auto encoded = [](const std::string& json) { return "offload1." + base64url_encode(json); };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "it is empty"},
      {"   \n", "it is empty"},
      {"swarm." + payload, "does not start with \"offload1.\""},
      {"offload2." + payload, "newer format"},
      {"offload1.", "content is not what a runner writes"},
      {good.substr(0, good.size() - 5), "bad base64url"},
      {good + "=", "bad base64url"},
      {"offload1." + payload.substr(0, 20) + " " + payload.substr(20), "bad base64url"},
      {encoded("[1,2]"), "content is not what a runner writes"},
      {encoded(R"({"a":"h:1","f":")" + kFingerprint + R"("})"), "lacks"},
      {encoded(R"({"a":"h:1","f":")" + kFingerprint + R"(","t":")" + kToken + R"(","x":"y"})"),
       "unknown field"},
      {encoded(R"({"a":"h:1","f":")" + kFingerprint + R"(","t":5})"), "not what a runner writes"},
      {encoded(R"({"a":"h","f":")" + kFingerprint + R"(","t":")" + kToken + R"("})"),
       "address is not host:port"},
      {encoded(R"({"a":"h:0","f":")" + kFingerprint + R"(","t":")" + kToken + R"("})"),
       "address is not host:port"},
      {encoded(R"({"a":"h:1","f":"sha256:ab","t":")" + kToken + R"("})"), "fingerprint"},
      {encoded(R"({"a":"h:1","f":")" + kFingerprint + R"(","t":"short"})"), "token"},
      {encoded(R"({"a":"h:1","f":")" + kFingerprint + R"(","t":")" + kToken + R"( x"})"),
       "token"},
      {"offload1." + std::string(5000, 'A'), "longer than any join string"},
  };
  for (const auto& [input, expected] : cases) {
    const std::string message = error_of(input);
    EXPECT_THAT(message, HasSubstr(expected)) << input;
    EXPECT_THAT(message, Not(HasSubstr(kToken))) << input;
  }
}

TEST(JoinString, FormattingRefusesWhatWouldNotParse) {
  EXPECT_THROW(format_join_string({"no-port", kFingerprint, kToken}), JoinStringError);
  EXPECT_THROW(format_join_string({"h:1", "SHA256:AA", kToken}), JoinStringError);
  EXPECT_THROW(format_join_string({"h:1", kFingerprint, "tiny"}), JoinStringError);
}

TEST(Base64Url, IsStrict) {
  std::string out;
  for (std::string data : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00"}) {
    ASSERT_TRUE(base64url_decode(base64url_encode(data), out));
    EXPECT_EQ(out, data);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64url_decode("Zm9=", out));  // padding
  EXPECT_FALSE(base64url_decode("Zm+v", out));  // the other alphabet
  EXPECT_FALSE(base64url_decode("Z", out));     // no whole byte
  EXPECT_FALSE(base64url_decode("Zn", out));    // "f" is "Zg": non-zero trailing bits
}
