package io.edgeopt.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory

/** Token ids, masks and truncation flags equal, id for id, those of the Python runtime on the real bundle. */
class TokenizerParityTest {
    @TestFactory
    fun `ids and masks equal the Python side's`(): List<DynamicTest> = Golden.cases.map { case ->
        DynamicTest.dynamicTest(case.getString("name")) { checkCase(case) }
    }

    private fun checkCase(case: JSONObject) {
        val text = case.getString("text")
        if (case.has("error")) {
            val error = case.getJSONObject("error")
            assertEquals("InputError", error.getString("type"))
            val thrown = assertThrows<InputError> { Golden.tokenizer.encode(text) }
            assertEquals(error.getString("message"), thrown.message)
            return
        }
        val got = Golden.tokenizer.encode(text)
        val want = case.getJSONArray("input_ids").longs()
        if (!want.contentEquals(got.inputIds)) {
            val i = want.indices.first { want[it] != got.inputIds[it] }
            throw AssertionError("${case.getString("name")}: ids differ from index $i: python ${want.drop(i).take(8)} kotlin ${got.inputIds.drop(i).take(8)}")
        }
        assertArrayEquals(case.getJSONArray("attention_mask").longs(), got.attentionMask)
        assertEquals(case.getBoolean("truncated"), got.truncated)
    }

    @Test
    fun `a batch names the bad text by its index, as the runtime does`() {
        val e = assertThrows<InputError> { Golden.tokenizer.encodeBatch(listOf("ok", " \n")) }
        assertEquals("texts[1]: text is empty or whitespace only; pass at least one word", e.message)
        assertEquals("texts is empty; pass at least one text", assertThrows<InputError> { Golden.tokenizer.encodeBatch(emptyList()) }.message)
    }

    @Test
    fun `the golden set covers truncation, errors and unknown words`() {
        assertEquals(Golden.maxSeqLen, Golden.tokenizer.maxSeqLen)
        assertEquals(true, Golden.cases.any { it.optBoolean("truncated") }, "no golden text is longer than max_seq_len")
        assertEquals(true, Golden.cases.any { it.has("error") })
    }

    private fun tiny(edit: (JSONObject) -> Unit): String {
        val spec = JSONObject(Golden.text("tokenizer.json"))
        edit(spec)
        return spec.toString()
    }

    @Test
    fun `a tokenizer without PAD is rejected with the fix`() {
        val json = tiny { spec ->
            spec.getJSONObject("model").getJSONObject("vocab").remove("[PAD]")
            spec.put("added_tokens", org.json.JSONArray())
        }
        val e = assertThrows<BundleInvalid> { WordPieceTokenizer.fromJson(json, 8, "t.json") }
        assertEquals("t.json has no [PAD] token; rebuild the bundle with a BERT WordPiece tokenizer", e.message)
    }

    @Test
    fun `a non-WordPiece tokenizer and broken JSON are rejected`() {
        val bpe = tiny { it.getJSONObject("model").put("type", "BPE") }
        assertEquals(
            "t.json has a BPE model, not WordPiece; rebuild the bundle with a BERT WordPiece tokenizer",
            assertThrows<BundleInvalid> { WordPieceTokenizer.fromJson(bpe, 8, "t.json") }.message,
        )
        assertThrows<BundleInvalid> { WordPieceTokenizer.fromJson("{not json", 8, "t.json") }
    }

    @Test
    fun `short sequence length truncates and keeps CLS and SEP`() {
        val tok = WordPieceTokenizer.fromJson(Golden.text("tokenizer.json"), 4)
        val full = Golden.tokenizer.encode("hello team meeting tomorrow")
        val short = tok.encode("hello team meeting tomorrow")
        assertEquals(true, short.truncated)
        assertEquals(full.inputIds.take(3) + full.inputIds[full.length - 1], short.inputIds.toList())
    }
}
