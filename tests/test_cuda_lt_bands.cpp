// cuBLASLt tactic bands (lt_matmul.h): a tuned algorithm per M band. Their encoding in kTacticDataAttr
// (both the 9-ints-a-band form and the 8 ints of older engines), the readable kTacticAttr and the order
// select() tries bands in need no device; tuning real bands and selecting one per M need a GPU (skipped
// without one, unless KILN_TEST_CUDA=require). The engine-level check is CudaMlp.Fp32DynamicBatchTunesAnM1Band
// in test_cuda_model.cpp.
#ifdef KILN_WITH_CUDA
#include <gtest/gtest.h>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/lt_matmul.h"
#include "test_util.h"

namespace kiln::cuda {
namespace {

// Arbitrary bytes: the encoding must carry them through unchanged, whatever they mean to cuBLASLt.
LtAlgo fake_algo(int64_t seed) {
  std::vector<int64_t> v(8);
  for (size_t i = 0; i < v.size(); ++i) v[i] = seed * 100 + static_cast<int64_t>(i);
  return *algo_from_ints(v);
}

std::vector<int64_t> ints(const LtAlgo& a) { return algo_to_ints(a); }

// Bands timed at these Ms (no algorithm: band_order looks at M only).
std::vector<LtBand> at_ms(std::initializer_list<int64_t> ms) {
  std::vector<LtBand> bands;
  for (int64_t m : ms) bands.push_back(LtBand{m});
  return bands;
}

Node gemm_node() {
  Node n;
  n.name = "fc1";
  n.op_type = "Gemm";
  n.opset = 13;
  return n;
}

TEST(LtBands, RoundTripThroughInts) {
  const std::vector<LtBand> bands = {{8192, fake_algo(1), "a", 0.0123}, {1, fake_algo(2), "b", 0.004}};
  const std::vector<int64_t> v = bands_to_ints(bands);
  ASSERT_EQ(v.size(), 18u);
  EXPECT_EQ(v[0], 8192);
  EXPECT_EQ(v[9], 1);
  auto back = bands_from_ints(v, "test data");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*back)[i].m, bands[i].m);
    EXPECT_EQ(ints((*back)[i].algo), ints(bands[i].algo));
    EXPECT_EQ((*back)[i].name, algo_name(bands[i].algo));
  }
  EXPECT_EQ(bands_to_ints(*back), v);
}

TEST(LtBands, OldEightIntsAreOneBandForAnyM) {
  const std::vector<int64_t> old = ints(fake_algo(3));
  auto bands = bands_from_ints(old, "test data");
  ASSERT_TRUE(bands.is_ok()) << bands.status().to_string();
  ASSERT_EQ(bands->size(), 1u);
  EXPECT_EQ((*bands)[0].m, 0);
  EXPECT_EQ(ints((*bands)[0].algo), old);
  EXPECT_EQ(bands_to_ints(*bands), old);  // written back as it was read
}

TEST(LtBands, MalformedDataIsRejectedNamingIt) {
  const std::vector<int64_t> band = bands_to_ints({LtBand{1, fake_algo(4)}});
  for (int n : {0, 1, 7, 10, 17, 19}) {
    const std::vector<int64_t> v(static_cast<size_t>(n), 1);
    auto r = bands_from_ints(v, "node 'fc1': attribute kiln_tactic_data");
    ASSERT_FALSE(r.is_ok()) << n << " ints";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("attribute kiln_tactic_data"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(std::to_string(n) + " ints"), std::string::npos) << r.status().message();
  }
  for (int64_t m : {0, -8}) {
    std::vector<int64_t> v = band;
    v.insert(v.end(), band.begin(), band.end());
    v[9] = m;  // the second band's M
    auto r = bands_from_ints(v, "what");
    ASSERT_FALSE(r.is_ok()) << "M " << m;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("band 1 has M = " + std::to_string(m)), std::string::npos)
        << r.status().message();
  }
}

TEST(LtBands, WriteAndReadTactic) {
  Node n = gemm_node();
  auto none = read_tactic(n);
  ASSERT_TRUE(none.is_ok());
  EXPECT_TRUE(none->empty());

  const std::vector<LtBand> two = {{8192, fake_algo(5), "big", 0.0123}, {1, fake_algo(6), "small", 0.004}};
  write_tactic(n, two);
  EXPECT_EQ(n.attrs.get_string(kTacticAttr, "").value(), "M=8192: big (0.0123 ms); M=1: small (0.0040 ms)");
  EXPECT_FLOAT_EQ(n.attrs.get_float(kTacticMsAttr, 0).value(), 0.0123f);
  auto read = read_tactic(n);
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ((*read)[0].m, 8192);
  EXPECT_EQ((*read)[1].m, 1);
  EXPECT_EQ(ints((*read)[1].algo), ints(two[1].algo));

  // One band keeps the plain name of engines written before bands.
  write_tactic(n, {LtBand{64, fake_algo(7), "only", 0.5}});
  EXPECT_EQ(n.attrs.get_string(kTacticAttr, "").value(), "only");
  EXPECT_EQ(n.attrs.get_ints(kTacticDataAttr, {}).value().size(), 9u);

  // An engine from before bands: 8 ints, one band for any M.
  n.attrs.set(kTacticDataAttr, ints(fake_algo(8)));
  read = read_tactic(n);
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].m, 0);

  n.attrs.set(kTacticDataAttr, std::vector<int64_t>(10, 1));
  read = read_tactic(n);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(read.status().message().find("'fc1'"), std::string::npos) << read.status().message();
  EXPECT_NE(read.status().message().find(kTacticDataAttr), std::string::npos) << read.status().message();
}

TEST(LtBands, OrderIsNearestMInLogScale) {
  const std::vector<LtBand> bands = at_ms({8192, 1});
  using Order = std::vector<size_t>;
  EXPECT_EQ(band_order(bands, 8192), (Order{0, 1}));
  EXPECT_EQ(band_order(bands, 1), (Order{1, 0}));
  EXPECT_EQ(band_order(bands, 64), (Order{1, 0}));    // log 64 is nearer log 1 than log 8192
  EXPECT_EQ(band_order(bands, 128), (Order{0, 1}));   // ... and log 128 nearer log 8192
  EXPECT_EQ(band_order(bands, 20000), (Order{0, 1}));
  EXPECT_EQ(band_order(at_ms({0}), 5), (Order{0}));
  EXPECT_EQ(band_order(at_ms({8192, 0}), 8192), (Order{0, 1}));  // ties keep their order
  EXPECT_EQ(band_order(at_ms({8192, 0}), 1), (Order{1, 0}));     // an any-M band matches every M
  EXPECT_TRUE(band_order({}, 1).empty());
}

// lt_tune on the course MLP's first layer (784 -> 256, bias + ReLU, W packed [N,K]) for a 1..8192 profile:
// two bands, and select() runs each at its own M.
TEST(LtBands, TunesAMinBandAndSelectsByM) {
  REQUIRE_GPU();
  auto device = current_device();
  ASSERT_TRUE(device.is_ok()) << device.status().to_string();
  const LtTypes types{DataType::kFloat32, DataType::kFloat32, false};
  auto problem = [](int64_t m) {
    LtProblem p;
    p.m = m;
    p.n = 256;
    p.k = 784;
    p.trans_w = true;
    p.bias = true;
    p.relu = true;
    return p;
  };
  const TuneContext ctx{.device = *device};
  auto bands = lt_tune(types, problem(8192), problem(1), problem(8192), 1.f, 0.f, ctx, "cuda.f32.gemm.cublaslt",
                       "fp32", "test");
  ASSERT_TRUE(bands.is_ok()) << bands.status().to_string();
  ASSERT_EQ(bands->size(), 2u);
  EXPECT_EQ((*bands)[0].m, 8192);
  EXPECT_EQ((*bands)[1].m, 1);
  for (const LtBand& b : *bands) EXPECT_GT(b.ms, 0) << b.name;

  // A static shape gets the one band.
  auto one = lt_tune(types, problem(64), problem(64), problem(64), 1.f, 0.f, ctx, "cuda.f32.gemm.cublaslt", "fp32",
                     "test");
  ASSERT_TRUE(one.is_ok()) << one.status().to_string();
  EXPECT_EQ(one->size(), 1u);

  auto lt = LtMatmul::create(types, *bands, "test");
  ASSERT_TRUE(lt.is_ok()) << lt.status().to_string();
  ASSERT_TRUE((*lt)->select(problem(1)).is_ok());
  EXPECT_EQ((*lt)->selected(), "tuned M=1: " + (*bands)[1].name);
  ASSERT_TRUE((*lt)->select(problem(8192)).is_ok());
  EXPECT_EQ((*lt)->selected(), "tuned M=8192: " + (*bands)[0].name);
  ASSERT_TRUE((*lt)->select(problem(300)).is_ok());
  EXPECT_EQ((*lt)->selected().rfind("tuned M=", 0), 0u) << (*lt)->selected();
}

}  // namespace
}  // namespace kiln::cuda
#endif  // KILN_WITH_CUDA
