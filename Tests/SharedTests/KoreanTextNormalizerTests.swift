import Foundation
@testable import Scoring
@testable import Shared
import Testing

@Suite("Korean text normaliser ko-v1")
struct KoreanTextNormalizerTests {
    let cer = KoreanTextNormalizer()
    let wer = KoreanTextNormalizer(removesWhitespace: false)

    @Test("NFD input comes out NFC, so decomposed and precomposed text score the same")
    func nfc() {
        #expect(cer.normalize("한국어".decomposedStringWithCanonicalMapping).unicodeScalars.map(\.value) == [0xD55C, 0xAD6D, 0xC5B4])
    }

    @Test("punctuation and symbols are removed, whitespace removed for CER and collapsed for WER")
    func punctuationAndSpaces() {
        #expect(cer.normalize(" 안녕하세요,  세계!  (테스트) ") == "안녕하세요세계테스트")
        #expect(wer.normalize(" 안녕하세요,  세계!\t(테스트) ") == "안녕하세요 세계 테스트")
        #expect(cer.normalize("「인용」…·~") == "인용")
    }

    @Test("Vosk's bracketed number tokens are removed; other brackets only lose the bracket")
    func voskTokens() {
        #expect(wer.normalize("[1] 저 는 [00] 학생 [12]") == "저 는 학생")
        #expect(cer.normalize("[주의] 경고") == "주의경고")
    }

    @Test("Latin is lower-cased")
    func latin() {
        #expect(wer.normalize("GPU A6000 IndexTTS") == "gpu a육천 indextts")
    }

    @Test("digits are read in Sino-Korean", arguments: [
        ("0", "영"), ("1", "일"), ("10", "십"), ("11", "십일"), ("20", "이십"), ("100", "백"), ("101", "백일"), ("110", "백십"),
        ("1000", "천"), ("2024", "이천이십사"), ("10000", "만"), ("12345", "만이천삼백사십오"), ("20000", "이만"),
        ("100000000", "일억"), ("100010000", "일억만"), ("1,000", "천"), ("20,000", "이만"), ("3.14", "삼점일사"),
        ("0.5", "영점오"), ("010", "공일공"), ("1,2", "일이"),
    ])
    func numbers(input: String, expected: String) {
        #expect(cer.normalize(input) == expected)
    }

    @Test("numbers inside text: units stay, a phone number is read digit by digit")
    func numbersInText() {
        #expect(cer.normalize("2024년 3월 5일") == "이천이십사년삼월오일")
        #expect(cer.normalize("010-1234-5678") == "공일공천이백삼십사오천육백칠십팔")
        #expect(cer.normalize("100%") == "백")
    }

    @Test("the version names the behaviour and the whitespace mode")
    func version() {
        #expect(cer.version == "ko-v1")
        #expect(wer.version == "ko-v1+spaces")
    }
}
